// Sequential layer-by-layer compression of a reference model, as GPTQ and SparseGPT calibrate:
// layer k is compressed from the activations it receives when every layer before it already
// runs compressed, so that each layer corrects for the error of the ones before it. Only one
// layer's calibration activations are held at a time.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/linear.hpp>
#include <slim/core/metrics.hpp>
#include <slim/cost/layer_cost.hpp>
#include <slim/model/transformer.hpp>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace slim::pipeline {

// What a compressor is given for one layer.
struct LayerInput {
  const std::string& name;
  const Matrix& weight;       // out x in, the original dense weight
  const Matrix& activations;  // tokens x in, produced by the already-compressed layers before it
};

// What a compressor returns: the inference-ready replacement, the weight it effectively applies
// (for error measurement) and its form for the cost model.
struct CompressedLayer {
  std::shared_ptr<const LinearLayer> layer;
  Matrix effective_weight;
  cost::LayerForm form;
  double sparsity = 0.0;  // fraction of zero weights in effective_weight's storage
  // Bytes of the compressed format when the layer that runs is not that format (a format with no
  // kernel runs as dequantized fp32); 0 means layer->bytes().
  std::size_t stored_bytes = 0;
};

using Compressor = std::function<CompressedLayer(const LayerInput&)>;
using LayerSelector = std::function<bool(const std::string&)>;

// Every linear layer but the classifier (embeddings are not linear layers and stay as they are).
inline bool all_but_classifier(const std::string& name) { return name != "output"; }
inline bool attention_only(const std::string& name) {
  return name.find(".attention.") != std::string::npos;
}
inline bool mlp_only(const std::string& name) {
  return name.find(".feed_forward.") != std::string::npos;
}

struct LayerReport {
  std::string name;
  Index out_features = 0;
  Index in_features = 0;
  std::size_t dense_bytes = 0;
  std::size_t bytes = 0;      // the replacement's bytes(), or the format's when it has no kernel
  double output_error = 0.0;  // on its own calibration activations
  double sparsity = 0.0;
  cost::LayerForm form;
};

struct CompressionReport {
  std::vector<LayerReport> layers;
  std::size_t peak_activation_bytes = 0;  // largest calibration capture held at once
};

// Compresses the selected linear layers of `model` in execution order, replacing each through
// Transformer::replace. `calibration` is a batch of token windows (rows).
inline CompressionReport compress_sequential(model::Transformer& model,
                                             const model::TokenBatch& calibration,
                                             const Compressor& compress,
                                             const LayerSelector& select = all_but_classifier) {
  require<ArgumentError>(calibration.size() > 0,
                         "pipeline::compress_sequential: calibration is empty; expected at least "
                         "one window of tokens");
  require<ArgumentError>(static_cast<bool>(compress),
                         "pipeline::compress_sequential: compressor is empty");
  CompressionReport report;
  bool any = false;
  for (const std::string& name : model.linear_names()) {
    if (!select(name)) continue;
    any = true;
    Matrix captured;
    model.set_hook([&](const std::string& layer, const Eigen::Ref<const Matrix>& x) {
      if (layer == name) captured = x;
    });
    model.forward(calibration);
    model.clear_hook();
    const Matrix& weight = model.linear_weight(name);
    report.peak_activation_bytes = std::max(
        report.peak_activation_bytes, sizeof(float) * static_cast<std::size_t>(captured.size()));
    CompressedLayer result = compress(LayerInput{name, weight, captured});
    require<ShapeError>(result.layer != nullptr &&
                            result.effective_weight.rows() == weight.rows() &&
                            result.effective_weight.cols() == weight.cols(),
                        "pipeline::compress_sequential: the compressor returned no layer or an "
                        "effective weight of the wrong shape for '",
                        name, "'");
    LayerReport r;
    r.name = name;
    r.out_features = weight.rows();
    r.in_features = weight.cols();
    r.dense_bytes = sizeof(float) * static_cast<std::size_t>(weight.size());
    r.bytes = result.stored_bytes > 0 ? result.stored_bytes : result.layer->bytes();
    r.output_error = metrics::output_error(captured, weight, result.effective_weight);
    r.sparsity = result.sparsity;
    r.form = result.form;
    report.layers.push_back(std::move(r));
    model.replace(name, std::move(result.layer));
  }
  require<ArgumentError>(any,
                         "pipeline::compress_sequential: the layer selection matches no "
                         "linear layer of the model");
  return report;
}

}  // namespace slim::pipeline
