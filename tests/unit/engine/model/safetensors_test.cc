// Corrupt checkpoints are rejected with a message naming the file and tensor. Each test builds
// its corrupted copy of a small saved model in a temp dir.
#include "worker/engine/model/safetensors.h"

#include <filesystem>
#include <fstream>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/model/test_util.h"
#include "worker/engine/model/model.h"

namespace align::engine::model {
namespace {

namespace fs = std::filesystem;
using ::align::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// A saved tiny model dir plus its safetensors header as JSON.
struct Saved {
  std::string dir;
  std::string file;
  nlohmann::json header;
  std::string data;  // bytes after the header
};

Saved SaveTiny(const std::string& name) {
  Saved s;
  s.dir = testutil::FreshDir(name);
  auto m = CausalLM::FromConfig(testutil::TinyConfig(ModelFamily::kQwen2), 1);
  EXPECT_TRUE(m.ok());
  EXPECT_TRUE((*m)->Save(s.dir, {}).ok());
  s.file = s.dir + "/model.safetensors";
  std::string bytes = ReadBytes(s.file);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  s.header = nlohmann::json::parse(bytes.substr(8, n));
  s.data = bytes.substr(8 + n);
  return s;
}

void Rewrite(const Saved& s, const nlohmann::json& header, const std::string& data) {
  std::string h = header.dump();
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
  WriteBytes(s.file, bytes + h + data);
}

TEST(SafetensorsTest, ReadsStoriesHeader) {
  ASSERT_OK_AND_ASSIGN(auto h, ReadSafetensorsHeader(testutil::StoriesDir() + "/model.safetensors"));
  EXPECT_EQ(h.size(), 47u);
  EXPECT_EQ(h.at("model.embed_tokens.weight").dtype, "F32");
  EXPECT_EQ(h.at("model.embed_tokens.weight").shape, std::vector<int64_t>({512, 64}));
  EXPECT_EQ(h.at("model.layers.0.self_attn.k_proj.weight").shape, std::vector<int64_t>({32, 64}));
}

TEST(SafetensorsTest, MissingTensorNamed) {
  Saved s = SaveTiny("missing");
  s.header.erase("model.layers.1.mlp.up_proj.weight");
  Rewrite(s, s.header, s.data);
  EXPECT_THAT(CausalLM::Load(s.dir, {}).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr(s.file), HasSubstr("missing tensor"),
                             HasSubstr("model.layers.1.mlp.up_proj.weight"))));
}

TEST(SafetensorsTest, ShapeMismatchAgainstConfig) {
  Saved s = SaveTiny("shape");
  // Same bytes, claimed as [24, 64] instead of [48, 32]: consistent file, wrong for config.json.
  s.header["model.layers.0.mlp.gate_proj.weight"]["shape"] = {24, 64};
  Rewrite(s, s.header, s.data);
  EXPECT_THAT(CausalLM::Load(s.dir, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(s.file), HasSubstr("model.layers.0.mlp.gate_proj.weight"),
                             HasSubstr("[24, 64]"), HasSubstr("[48, 32]"),
                             HasSubstr("config.json"))));
}

TEST(SafetensorsTest, TruncatedFile) {
  Saved s = SaveTiny("truncated");
  std::string bytes = ReadBytes(s.file);
  WriteBytes(s.file, bytes.substr(0, bytes.size() - 100));
  EXPECT_THAT(CausalLM::Load(s.dir, {}).status(),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr(s.file), HasSubstr("truncated"))));
  WriteBytes(s.file, bytes.substr(0, 5));
  EXPECT_THAT(CausalLM::Load(s.dir, {}).status(),
              StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr(s.file), HasSubstr("truncated"))));
  WriteBytes(s.file, bytes.substr(0, 40));  // cut inside the JSON header
  EXPECT_THAT(CausalLM::Load(s.dir, {}).status(),
              StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr(s.file), HasSubstr("truncated"))));
}

TEST(SafetensorsTest, OverlappingOffsetsRejected) {
  Saved s = SaveTiny("overlap");
  auto& a = s.header["model.layers.0.self_attn.k_proj.weight"]["data_offsets"];
  auto& b = s.header["model.layers.0.self_attn.v_proj.weight"]["data_offsets"];
  // Point v_proj at k_proj's bytes (same size), leaving a hole: an overlap.
  b = a;
  Rewrite(s, s.header, s.data);
  EXPECT_THAT(CausalLM::Load(s.dir, {}).status(),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr(s.file), HasSubstr("overlap"),
                             HasSubstr("self_attn.k_proj.weight"),
                             HasSubstr("self_attn.v_proj.weight"))));
}

TEST(SafetensorsTest, OffsetsOutOfRangeOrWrongSizeRejected) {
  Saved s = SaveTiny("range");
  nlohmann::json h = s.header;
  const uint64_t big = s.data.size() + 4096;
  h["model.norm.weight"]["data_offsets"] = {big, big + 32 * 4};
  Rewrite(s, h, s.data);
  EXPECT_THAT(CausalLM::Load(s.dir, {}).status(),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr(s.file), HasSubstr("'model.norm.weight'"),
                             HasSubstr("past the end"))));
  h = s.header;
  auto off = h["model.norm.weight"]["data_offsets"];
  h["model.norm.weight"]["data_offsets"] = {off[0], off[0].get<uint64_t>() + 12};
  Rewrite(s, h, s.data);
  EXPECT_THAT(CausalLM::Load(s.dir, {}).status(),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("'model.norm.weight'"), HasSubstr("header lies"),
                             HasSubstr("needs 128"))));
}

TEST(SafetensorsTest, UnreadableDtypeNamed) {
  Saved s = SaveTiny("dtype");
  // Relabel 32 float32 values as 16 int64 ones: the sizes still agree, the dtype does not.
  s.header["model.norm.weight"]["dtype"] = "I64";
  s.header["model.norm.weight"]["shape"] = {16};
  Rewrite(s, s.header, s.data);
  EXPECT_THAT(CausalLM::Load(s.dir, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(s.file), HasSubstr("'model.norm.weight'"),
                             HasSubstr("I64"), HasSubstr("F32, F16, BF16"))));
}

TEST(SafetensorsTest, MissingWeightsFileNamed) {
  Saved s = SaveTiny("nofile");
  fs::remove(s.file);
  EXPECT_THAT(CausalLM::Load(s.dir, {}).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no model.safetensors")));
}

}  // namespace
}  // namespace align::engine::model
