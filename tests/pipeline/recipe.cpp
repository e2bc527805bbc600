// Recipes: JSON parsing and validation with errors naming the stage and key, composition of
// stages on the trained test model (structured pruning + distillation + quantization of disjoint
// layers), and the refusals (a layer compressed twice, distillation after a layer-wise stage,
// a selection that matches nothing).
#include <slim/pipeline.hpp>

#include "../support/reference_model.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>

namespace {

using slim::Index;
using slim::Matrix;
using slim::pipeline::parse_recipe;

slim::pipeline::ModelContext context(const slim::model::TokenPairs& calib) {
  return {calib.inputs, slim::test::reference_corpus().train_tokens, 1};
}

std::string error_of(const std::string& text) {
  try {
    parse_recipe(text);
  } catch (const slim::ArgumentError& e) {
    return e.what();
  }
  return "";
}

TEST(Recipe, ParsesStagesWithTheirOptions) {
  const auto r = parse_recipe(R"({"name": "mix",
    "stages": [{"method": "minitron-mlp", "fraction": 0.25},
               {"method": "distill", "steps": 3, "batch": 2},
               {"method": "gptq", "bits": 4, "layers": "attention"},
               {"method": "sparsegpt", "pattern": "2:4", "layers": "mlp"},
               {"method": "mixed-precision", "candidates": [3, 4], "gptq": false,
                "layers": "output"}]})");
  EXPECT_EQ(r.name, "mix");
  ASSERT_EQ(r.stages.size(), 5u);
  EXPECT_EQ(r.stages[0].numbers.at("fraction"), 0.25);
  EXPECT_EQ(r.stages[2].layers, "attention");
  EXPECT_EQ(r.stages[3].pattern, "2:4");
  EXPECT_EQ(r.stages[4].candidates, (std::vector<int>{3, 4}));
  EXPECT_EQ(r.stages[4].numbers.at("gptq"), 0.0);
}

TEST(Recipe, BadRecipesNameTheStageAndTheKey) {
  EXPECT_NE(error_of("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(R"({"stages": 3})").find("stages"), std::string::npos);
  EXPECT_NE(error_of(R"({"stages": []})").find("no stages"), std::string::npos);
  EXPECT_NE(error_of(R"({"stages": [{"method": "zip"}]})").find("unknown method 'zip'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"stages": [{"method": "gptq", "bitz": 4}]})")
                .find("stage 1 (gptq): unknown option 'bitz'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"stages": [{"method": "rtn"}, {"method": "gptq", "bits": 12}]})")
                .find("stage 2 (gptq): bits 12"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"stages": [{"method": "wanda", "sparsity": 1.0}]})").find("sparsity 1"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"stages": [{"method": "wanda", "pattern": "4:2"}]})").find("'4:2'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"stages": [{"method": "svd", "budget": 0}]})").find("budget 0"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"stages": [{"method": "rtn", "layers": "("}]})").find("layers '('"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"stages": [{"method": "rtn", "bits": "four"}]})").find("'bits'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"stages": [{"method": "distill", "steps": 0}]})").find("steps"),
            std::string::npos);
}

TEST(Recipe, ComposesStructuredPruningDistillationAndLayerwiseStages) {
  const auto& original = slim::test::reference_model();
  const auto calib = slim::test::reference_calibration(4);
  const auto recipe = parse_recipe(R"({"name": "t",
    "stages": [{"method": "minitron-mlp", "fraction": 0.25},
               {"method": "distill", "steps": 2, "batch": 2},
               {"method": "rtn", "bits": 8, "layers": "attention"},
               {"method": "magnitude", "pattern": "2:4", "layers": "feed_forward.w[13]"}]})");
  const auto r = slim::pipeline::apply_recipe(original, recipe, context(calib));
  EXPECT_EQ(r.model.config().hidden_dim, original.config().hidden_dim * 3 / 4);
  const Index layers = original.config().n_layers;
  EXPECT_EQ(static_cast<Index>(r.report.layers.size()), layers * 4 + layers * 2);
  for (const auto& l : r.report.layers) {
    EXPECT_NE(r.model.replacement(l.name), nullptr) << l.name;
  }
  EXPECT_EQ(r.model.replacement("layers.0.feed_forward.w2"), nullptr);
  EXPECT_EQ(r.log.size(), 4u);
  const Matrix logits = r.model.forward(slim::test::reference_validation(1).inputs);
  EXPECT_TRUE(logits.allFinite());
}

TEST(Recipe, RefusesToCompressALayerTwiceOrDistillCompressedLayers) {
  const auto& original = slim::test::reference_model();
  const auto calib = slim::model::consecutive_windows(slim::test::reference_corpus().train_tokens,
                                                      original.config().seq_len, 2);
  const auto twice = parse_recipe(R"({"stages": [{"method": "rtn", "layers": "mlp"},
                                                 {"method": "gptq", "layers": "w2"}]})");
  EXPECT_THROW(slim::pipeline::apply_recipe(original, twice, context(calib)), slim::ArgumentError);
  const auto late = parse_recipe(R"({"stages": [{"method": "rtn", "layers": "wq"},
                                                {"method": "distill", "steps": 1}]})");
  EXPECT_THROW(slim::pipeline::apply_recipe(original, late, context(calib)), slim::ArgumentError);
  const auto nothing = parse_recipe(R"({"stages": [{"method": "rtn", "layers": "^attn"}]})");
  EXPECT_THROW(slim::pipeline::apply_recipe(original, nothing, context(calib)),
               slim::ArgumentError);
}

}  // namespace

namespace {

// The two compositions inside one layer: low-rank then quantize the factors (a real kernel), and
// prune then quantize the survivors (no kernel: fp32 sparse values run, the packed size counted).
TEST(Recipe, ComposesQuantizedFactorsAndQuantizedSurvivorsAndTheFileKeepsThem) {
  const auto& original = slim::test::reference_model();
  const auto calib = slim::test::reference_calibration(4);
  const auto recipe = parse_recipe(R"({"stages": [
    {"method": "svd-llm", "budget": 0.5, "bits": 8, "layers": "attention"},
    {"method": "sparsegpt", "pattern": "2:4", "bits": 4, "layers": "mlp"}]})");
  const auto r = slim::pipeline::apply_recipe(original, recipe, context(calib));
  EXPECT_FALSE(r.has_kernel);
  for (const auto& l : r.report.layers) {
    const auto layer = r.model.replacement(l.name);
    ASSERT_NE(layer, nullptr);
    if (l.name.find("attention") != std::string::npos) {
      EXPECT_NE(dynamic_cast<const slim::lowrank::QuantizedLinear*>(layer.get()), nullptr);
    } else {
      const auto* sparse = dynamic_cast<const slim::prune::SparseLinear*>(layer.get());
      ASSERT_NE(sparse, nullptr) << l.name;
      // Half the weights survive at 4 bits with 2-bit positions: well under the fp32 N:M
      // storage (32 + 2 bits per survivor), with the group scales on top.
      EXPECT_LT(l.bytes, sparse->bytes() / 4) << l.name;
      EXPECT_NEAR(l.sparsity, 0.5, 1e-9);
    }
  }
  const std::string path = ::testing::TempDir() + "/slim_recipe_composed.safetensors";
  slim::pipeline::save_compressed_model(path, r.model);
  const auto loaded = slim::pipeline::load_compressed_model(path);
  const auto tokens = slim::test::reference_validation(1).inputs;
  const Matrix a = r.model.forward(tokens);
  const Matrix b = loaded.forward(tokens);
  EXPECT_EQ((a - b).cwiseAbs().maxCoeff(), 0.0f);
  EXPECT_NE(dynamic_cast<const slim::lowrank::QuantizedLinear*>(
                loaded.replacement("layers.0.attention.wq").get()),
            nullptr);
  std::remove(path.c_str());
}

TEST(Recipe, RefusesFactorWidthsWithoutAKernel) {
  EXPECT_THROW(parse_recipe(R"({"stages": [{"method": "svd", "bits": 3}]})"), slim::ArgumentError);
  EXPECT_THROW(parse_recipe(R"({"stages": [{"method": "sparsegpt", "bits": 9}]})"),
               slim::ArgumentError);
}

}  // namespace
