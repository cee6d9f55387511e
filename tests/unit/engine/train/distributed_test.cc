// Data-parallel training: the same run on 2 and 3 ranks (threads of this process, one Gloo group
// over an in-memory store) takes the 1-rank run's steps: per-step losses within 1e-6, final
// weights within 1e-5 and identical on every rank, and only rank 0 writes files and step events.
#include <filesystem>
#include <random>
#include <thread>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/train/tiny_data.h"
#include "worker/engine/train/distributed.h"
#include "worker/engine/train/trainer.h"

namespace align::engine::train {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::Pairs;
using testing::SftRows;
using testing::TinyConfig;

// What one rank's run leaves behind.
struct RankRun {
  absl::StatusOr<TrainResult> result = absl::UnknownError("not run");
  std::vector<at::Tensor> weights;
  RecordingEventSink events;
};

class DistributedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!DataParallelAvailable()) GTEST_SKIP() << "built without the gloo headers";
    root_ = ::testing::TempDir() + "/distributed_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(root_);
    fs::create_directories(root_);
    auto m = model::CausalLM::FromConfig(TinyConfig(), 7);
    ASSERT_OK(m.status());
    ASSERT_OK((*m)->Save(root_ + "/base"));
  }
  void TearDown() override {
    if (!root_.empty()) fs::remove_all(root_);
  }

  std::unique_ptr<model::CausalLM> Load(bool trainable, const std::string& dir = "") {
    model::LoadOptions o;
    o.trainable = trainable;
    auto m = model::CausalLM::Load(dir.empty() ? root_ + "/base" : dir, o);
    EXPECT_OK(m.status());
    return m.ok() ? std::move(*m) : nullptr;
  }

  // Settings where the epoch's last global batch (10 % 4 = 2 examples) leaves rank 2 of 3 idle.
  static TrainSettings Settings() {
    TrainSettings s;
    s.learning_rate = 5e-3;
    s.batch_size = 2;
    s.gradient_accumulation_steps = 2;
    s.max_steps = 6;
    s.save_steps = 3;
    s.warmup_steps = 1;
    s.seed = 11;
    return s;
  }

  // Each rank gets its own output paths, so the test sees exactly which rank wrote what.
  TrainPaths Paths(const std::string& name, int rank) const {
    TrainPaths p;
    const std::string dir = root_ + "/" + name + "/rank" + std::to_string(rank);
    p.checkpoint_root = dir + "/checkpoints";
    p.output_model_dir = dir + "/model";
    return p;
  }

  // Runs `world` ranks as threads; make_objective() builds a rank's objective. With `resume`,
  // every rank loads the policy from that checkpoint and resumes from it.
  template <typename MakeObjective>
  std::vector<std::unique_ptr<RankRun>> Run(const std::string& name, int world,
                                            MakeObjective make_objective,
                                            const TrainSettings& settings = Settings(),
                                            const std::string& resume = "") {
    std::vector<std::unique_ptr<RankRun>> runs;
    for (int r = 0; r < world; ++r) runs.push_back(std::make_unique<RankRun>());
    auto body = [&](int r) {
      RankRun& run = *runs[static_cast<size_t>(r)];
      auto policy = Load(true, resume);
      auto objective = make_objective();
      std::unique_ptr<Collective> collective = SingleProcessCollective();
      if (world > 1) {
        auto c = ConnectInProcess(name, r, world, std::chrono::seconds(60));
        if (!c.ok()) {
          run.result = c.status();
          return;
        }
        collective = std::move(*c);
      }
      TrainPaths paths = Paths(name, r);
      paths.resume_from = resume;
      run.result = RunTraining(*policy, *objective, settings, paths, run.events, collective.get());
      for (const at::Tensor& p : policy->Parameters()) run.weights.push_back(p.detach().clone());
    };
    std::vector<std::thread> threads;
    for (int r = 0; r < world; ++r) threads.emplace_back(body, r);
    for (auto& t : threads) t.join();
    return runs;
  }

  static int Count(const RecordingEventSink& events, const std::string& type) {
    int n = 0;
    for (const auto& e : events.events) n += e["event"] == type;
    return n;
  }

  // The multi-rank runs against the 1-rank run.
  void ExpectSameTraining(const std::vector<std::unique_ptr<RankRun>>& one,
                          const std::vector<std::unique_ptr<RankRun>>& many,
                          const std::string& name) {
    const TrainResult& ref = *one[0]->result;
    ASSERT_EQ(ref.losses.size(), 6u);
    for (size_t r = 0; r < many.size(); ++r) {
      SCOPED_TRACE("rank " + std::to_string(r) + " of " + std::to_string(many.size()));
      ASSERT_OK(many[r]->result.status());
      const TrainResult& got = *many[r]->result;
      ASSERT_EQ(got.losses.size(), ref.losses.size());
      for (size_t i = 0; i < ref.losses.size(); ++i) {
        EXPECT_NEAR(got.losses[i], ref.losses[i], 1e-6) << "step " << i + 1;
        EXPECT_EQ(got.losses[i], many[0]->result->losses[i]) << "step " << i + 1;
      }
      for (const auto& [k, v] : ref.last_metrics) {
        ASSERT_TRUE(got.last_metrics.count(k)) << k;
        if (k != "grad_norm") {
          EXPECT_NEAR(got.last_metrics.at(k), v, 1e-5 * (1 + std::abs(v))) << k;
        }
      }
      ASSERT_EQ(many[r]->weights.size(), one[0]->weights.size());
      for (size_t i = 0; i < one[0]->weights.size(); ++i) {
        EXPECT_LT((many[r]->weights[i] - one[0]->weights[i]).abs().max().item<double>(), 1e-5)
            << "parameter " << i;
        EXPECT_TRUE(at::equal(many[r]->weights[i], many[0]->weights[i])) << "parameter " << i;
      }
      const TrainPaths p = Paths(name, static_cast<int>(r));
      if (r == 0) {
        EXPECT_EQ(Count(many[r]->events, "step"), 6);
        EXPECT_EQ(Count(many[r]->events, "checkpoint"), 2);
        EXPECT_TRUE(fs::exists(p.checkpoint_root + "/checkpoint-6"));
        EXPECT_TRUE(fs::exists(p.output_model_dir + "/model.safetensors"));
        EXPECT_EQ(got.final_model_dir, p.output_model_dir);
      } else {
        EXPECT_EQ(Count(many[r]->events, "step"), 0);
        EXPECT_EQ(Count(many[r]->events, "checkpoint"), 0);
        EXPECT_FALSE(fs::exists(p.checkpoint_root));
        EXPECT_FALSE(fs::exists(p.output_model_dir));
        EXPECT_EQ(got.final_model_dir, "");
      }
    }
  }

  std::string root_;
};

TEST(CollectiveTest, SumsBroadcastsAndWaits) {
  if (!DataParallelAvailable()) GTEST_SKIP() << "built without the gloo headers";
  constexpr int kWorld = 2;
  std::vector<std::vector<at::Tensor>> sums(kWorld), casts(kWorld);
  std::vector<absl::Status> status(kWorld);
  auto body = [&](int r) {
    auto c = ConnectInProcess("collective", r, kWorld, std::chrono::seconds(60));
    if (!c.ok()) {
      status[r] = c.status();
      return;
    }
    EXPECT_EQ((*c)->rank(), r);
    EXPECT_EQ((*c)->world_size(), kWorld);
    const double k = r + 1;
    sums[r] = {at::tensor({1.0f, 2.0f}) * k, at::full({2, 2}, 3.0 * k, at::kDouble),
               at::tensor({0.5f}) * k};
    casts[r] = {at::full({3}, 10.0f * k)};
    status[r] = (*c)->AllReduceSum(sums[r]);
    if (status[r].ok()) status[r] = (*c)->Broadcast(casts[r]);
    if (status[r].ok()) status[r] = (*c)->Barrier();
  };
  std::thread t0(body, 0), t1(body, 1);
  t0.join();
  t1.join();
  for (int r = 0; r < kWorld; ++r) {
    ASSERT_OK(status[r]);
    EXPECT_TRUE(at::equal(sums[r][0], at::tensor({3.0f, 6.0f})));
    EXPECT_TRUE(at::equal(sums[r][1], at::full({2, 2}, 9.0, at::kDouble)));
    EXPECT_TRUE(at::equal(sums[r][2], at::tensor({1.5f})));
    EXPECT_TRUE(at::equal(casts[r][0], at::full({3}, 10.0f)));
  }
}

TEST(CollectiveTest, SingleProcessIsANoOp) {
  auto c = SingleProcessCollective();
  std::vector<at::Tensor> t{at::tensor({4.0f})};
  ASSERT_OK(c->AllReduceSum(t));
  ASSERT_OK(c->Broadcast(t));
  ASSERT_OK(c->Barrier());
  EXPECT_EQ(c->world_size(), 1);
  EXPECT_TRUE(at::equal(t[0], at::tensor({4.0f})));
}

TEST(CollectiveTest, RendezvousTimesOutNamingTheAddress) {
  if (!DataParallelAvailable()) GTEST_SKIP() << "built without the gloo headers";
  // Rank 1 of 2 with nobody serving the store: a clear error within the timeout.
  auto c = ConnectTcp("127.0.0.1", 1, 1, 2, std::chrono::milliseconds(1500));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(c.status().message(), HasSubstr("127.0.0.1:1"));
  EXPECT_THAT(c.status().message(), HasSubstr("rank 1 of 2"));
  EXPECT_FALSE(ConnectTcp("127.0.0.1", 0, 0, 2, std::chrono::seconds(1)).ok());
  EXPECT_FALSE(ConnectTcp("127.0.0.1", 29500, 2, 2, std::chrono::seconds(1)).ok());
}

TEST_F(DistributedTest, SftOnTwoAndThreeRanksTakesTheOneRankSteps) {
  const auto rows = SftRows(10, 3);
  auto make = [&] { return std::make_unique<SftObjective>(rows, rows, 0, false, 4); };
  auto one = Run("sft1", 1, make);
  ASSERT_OK(one[0]->result.status());
  ExpectSameTraining(one, Run("sft2", 2, make), "sft2");
  ExpectSameTraining(one, Run("sft3", 3, make), "sft3");
}

// Killed after step 4 on 2 ranks, resumed on 2 ranks from rank 0's step-3 checkpoint (every rank
// loads it): steps 4-6 equal the uninterrupted 1-rank run's.
TEST_F(DistributedTest, SftResumeOnTwoRanksContinuesTheOneRankRun) {
  const auto rows = SftRows(10, 3);
  auto make = [&] { return std::make_unique<SftObjective>(rows, rows, 0, false, 4); };
  auto one = Run("one", 1, make);
  ASSERT_OK(one[0]->result.status());
  TrainSettings killed = Settings();
  killed.stop_after_steps = 4;
  auto first = Run("killed", 2, make, killed);
  for (const auto& run : first) ASSERT_OK(run->result.status());
  const std::string ckpt = Paths("killed", 0).checkpoint_root + "/checkpoint-3";
  ASSERT_TRUE(fs::exists(ckpt + "/COMPLETE"));
  EXPECT_FALSE(fs::exists(Paths("killed", 1).checkpoint_root));
  auto second = Run("resumed", 2, make, Settings(), ckpt);
  for (size_t r = 0; r < second.size(); ++r) {
    ASSERT_OK(second[r]->result.status());
    const TrainResult& got = *second[r]->result;
    EXPECT_EQ(got.resumed_from, ckpt);
    ASSERT_EQ(got.losses.size(), 3u) << "rank " << r;
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_NEAR(got.losses[i], one[0]->result->losses[3 + i], 1e-6) << "rank " << r << " step " << 4 + i;
    }
  }
}

TEST_F(DistributedTest, DpoWithFrozenReferenceOnTwoRanksTakesTheOneRankSteps) {
  const auto pairs = Pairs(10, 5);
  DpoOptions o;
  o.beta = 0.1;
  std::vector<std::unique_ptr<model::CausalLM>> refs;
  std::mutex mu;
  auto make = [&] {
    auto obj = std::make_unique<DpoObjective>(pairs, pairs, 0, o, 4);
    std::lock_guard<std::mutex> lock(mu);
    refs.push_back(Load(false));
    obj->SetReferenceModel(refs.back().get());
    return obj;
  };
  auto one = Run("dpo1", 1, make);
  ASSERT_OK(one[0]->result.status());
  ExpectSameTraining(one, Run("dpo2", 2, make), "dpo2");
}

}  // namespace
}  // namespace align::engine::train
