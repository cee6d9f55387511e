// Every metric the Grafana dashboard and the Prometheus alert rules query must be one the
// coordinator (align_*) or the worker (align_worker_*) exports: a renamed metric breaks this test
// instead of silently emptying a panel.
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace align::cli {
namespace {

namespace fs = std::filesystem;

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::set<std::string> MetricNames(const std::string& expr) {
  static const std::regex kName("\\balign_[a-z0-9_]+");
  std::set<std::string> out;
  for (auto it = std::sregex_iterator(expr.begin(), expr.end(), kName); it != std::sregex_iterator();
       ++it) {
    std::string n = it->str();
    // Histogram series are exported under the histogram's name.
    for (const char* suffix : {"_bucket", "_count", "_sum"}) {
      const std::string s(suffix);
      if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0 &&
          n.find("_seconds") != std::string::npos) {
        n.resize(n.size() - s.size());
      }
    }
    out.insert(n);
  }
  return out;
}

void CollectExprs(const nlohmann::json& j, std::vector<std::string>* out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if ((it.key() == "expr" || it.key() == "definition") && it.value().is_string()) {
        out->push_back(it.value().get<std::string>());
      } else if (it.key() == "query" && it.value().is_object() && it.value().contains("query")) {
        out->push_back(it.value()["query"].get<std::string>());
      } else {
        CollectExprs(it.value(), out);
      }
    }
  } else if (j.is_array()) {
    for (const auto& e : j) CollectExprs(e, out);
  }
}

std::string ExportingSources() {
  std::string all;
  for (const char* dir : {"coordinator", "worker"}) {
    for (const auto& e : fs::recursive_directory_iterator(fs::path(ALIGN_SOURCE_DIR) / dir)) {
      if (e.path().string().find("/engine/") != std::string::npos) continue;
      if (e.path().extension() == ".cc" || e.path().extension() == ".h") all += Read(e.path());
    }
  }
  return all;
}

TEST(DeployMetricsTest, DashboardQueriesNameExportedMetrics) {
  auto dashboard = nlohmann::json::parse(
      Read(fs::path(ALIGN_SOURCE_DIR) / "deploy/grafana/align-dashboard.json"));
  std::vector<std::string> exprs;
  CollectExprs(dashboard, &exprs);
  ASSERT_GE(exprs.size(), 15u);
  const std::string sources = ExportingSources();
  std::set<std::string> names;
  for (const auto& e : exprs) {
    for (const auto& n : MetricNames(e)) names.insert(n);
  }
  EXPECT_GE(names.size(), 15u);
  for (const auto& n : names) {
    EXPECT_NE(sources.find("\"" + n + "\""), std::string::npos)
        << n << " is queried by the dashboard but no coordinator/worker source exports it";
  }
  // The four areas the dashboard must cover.
  EXPECT_TRUE(names.count("align_queue_depth"));
  EXPECT_TRUE(names.count("align_stages"));
  EXPECT_TRUE(names.count("align_worker_loss"));
  EXPECT_TRUE(names.count("align_worker_gpu_utilization_ratio"));
}

TEST(DeployMetricsTest, AlertRulesNameExportedMetrics) {
  std::string rules = Read(fs::path(ALIGN_SOURCE_DIR) / "deploy/prometheus/alerts.yml");
  const std::string sources = ExportingSources();
  std::set<std::string> names;
  std::istringstream in(rules);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("expr:") == std::string::npos) continue;
    for (const auto& n : MetricNames(line)) names.insert(n);
  }
  EXPECT_EQ(names, (std::set<std::string>{"align_lease_expirations_total", "align_worker_reward_margin",
                                          "align_worker_step"}));
  for (const auto& n : names) {
    EXPECT_NE(sources.find("\"" + n + "\""), std::string::npos) << n;
  }
}

}  // namespace
}  // namespace align::cli
