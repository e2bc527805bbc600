// Whole-model methods, which change the model's shape or train it rather than replace one layer at
// a time: Minitron's width pruning of the MLP (Muralidharan et al. 2024, sec. 2.2: a neuron's
// importance is the L2 norm over calibration tokens of its activation, here the SwiGLU product
// silu(x W1^T) * (x W3^T) that enters W2, the neuron's actual contribution), which returns a
// physically smaller dense model, optionally followed by knowledge distillation from the original
// (sec. 3: the pruned model is retrained with a KD loss against the unpruned teacher's logits).
#pragma once

#include <slim/core/error.hpp>
#include <slim/model/corpus.hpp>
#include <slim/model/distill.hpp>
#include <slim/model/transformer.hpp>
#include <slim/pipeline/sequential.hpp>
#include <slim/prune/structured.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace slim::pipeline {

// What a whole-model method is given.
struct ModelContext {
  const model::TokenBatch& calibration;       // calibration windows (rows)
  const std::vector<std::int32_t>& training;  // token stream for any training stage
  int threads = 0;                            // OpenMP threads for training (0 = default)
  LayerSelector select = all_but_classifier;  // the layers a layer-wise stage may compress
};

// What a whole-model method returns: the new model and, when it replaced layers by compressed ones
// (as compress_sequential does), their report; without one, sizes come from the layers' shapes.
struct TransformedModel {
  model::Transformer model;
  std::optional<CompressionReport> report;
  bool has_kernel = true;  // false: some replaced layer runs a dequantized fp32 fallback
};

using ModelTransform =
    std::function<TransformedModel(const model::Transformer&, const ModelContext&)>;

struct MlpPruning {
  model::Transformer model;
  std::vector<std::vector<Index>> kept;  // per layer: the kept neurons of the original, ascending
};

// Removes round(fraction * hidden_dim) MLP neurons from every layer (the same count in each, as
// the model has one hidden_dim), ranked per layer by the L2 norm over `calibration`'s tokens of
// the activation entering W2; W1 and W3 lose those rows and W2 those columns. The model must run
// dense layers (no replacements).
inline MlpPruning prune_mlp_width(const model::Transformer& original,
                                  const model::TokenBatch& calibration, double fraction) {
  require<ArgumentError>(fraction > 0.0 && fraction < 1.0, "pipeline::prune_mlp_width: fraction ",
                         fraction, " is outside (0, 1)");
  require<ArgumentError>(!original.any_replaced(),
                         "pipeline::prune_mlp_width: the model has replaced (compressed) layers; "
                         "structured pruning slices dense weights, so apply it first");
  const model::Config& c = original.config();
  const Index drop = static_cast<Index>(std::lround(fraction * static_cast<double>(c.hidden_dim)));
  require<ArgumentError>(drop >= 1 && drop < c.hidden_dim, "pipeline::prune_mlp_width: fraction ",
                         fraction, " removes ", drop, " of ", c.hidden_dim,
                         " neurons; expected at least one removed and one kept");
  // One forward pass captures every layer's W2 input.
  std::vector<Matrix> activations(static_cast<std::size_t>(c.n_layers));
  model::Transformer probe = original;
  probe.set_hook([&](const std::string& name, const Eigen::Ref<const Matrix>& x) {
    for (Index l = 0; l < c.n_layers; ++l) {
      if (name == "layers." + std::to_string(l) + ".feed_forward.w2") {
        activations[static_cast<std::size_t>(l)] = x;
      }
    }
  });
  probe.forward(calibration);
  probe.clear_hook();

  model::Weights w = original.weights();
  w.config.hidden_dim = c.hidden_dim - drop;
  MlpPruning out{model::Transformer(model::Weights::zeros(w.config)), {}};
  const double sparsity = static_cast<double>(drop) / static_cast<double>(c.hidden_dim);
  for (Index l = 0; l < c.n_layers; ++l) {
    model::LayerWeights& layer = w.layers[static_cast<std::size_t>(l)];
    prune::StructuredOptions options;
    options.target = prune::PatternKind::columns;
    options.sparsity = sparsity;
    prune::StructuredResult r =
        prune::prune_structured(layer.w2, activations[static_cast<std::size_t>(l)], options);
    require<NumericalError>(static_cast<Index>(r.kept.size()) == w.config.hidden_dim,
                            "pipeline::prune_mlp_width: layer ", l, " kept ", r.kept.size(),
                            " neurons; expected ", w.config.hidden_dim);
    layer.w1 = prune::select_rows(layer.w1, r.kept);
    layer.w3 = prune::select_rows(layer.w3, r.kept);
    layer.w2 = std::move(r.weight);
    out.kept.push_back(std::move(r.kept));
  }
  out.model = model::Transformer(std::move(w));
  return out;
}

// A whole-model method of the comparison table.
struct ModelMethod {
  std::string name;
  std::string family;
  ModelTransform transform;
};

// Minitron width pruning of the MLP, then `kd_steps` of distillation from the original (0: none).
inline ModelMethod minitron_mlp_method(double fraction, Index kd_steps,
                                       const model::DistillOptions& kd = {}) {
  std::string name = "Minitron MLP " + std::to_string(static_cast<int>(fraction * 100 + 0.5)) + "%";
  if (kd_steps > 0) name += " + KD " + std::to_string(kd_steps);
  return {name, kd_steps > 0 ? "pruning + KD" : "pruning",
          [fraction, kd_steps, kd](const model::Transformer& original, const ModelContext& ctx) {
            MlpPruning pruned = prune_mlp_width(original, ctx.calibration, fraction);
            if (kd_steps > 0) {
              model::DistillOptions options = kd;
              options.train.steps = kd_steps;
              options.train.warmup_steps = std::min(options.train.warmup_steps, kd_steps);
              options.train.threads = ctx.threads;
              model::distill(pruned.model, original, ctx.training, options);
            }
            return TransformedModel{std::move(pruned.model), std::nullopt, true};
          }};
}

}  // namespace slim::pipeline
