// Every parameter of the reference decoder, named as in llama2.c (`TransformerWeights`): each
// linear weight is a slim::Matrix in the out x in convention, each RMSNorm gain a slim::Vector.
// Random initialisation follows llama2.c's model.py: N(0, 0.02), residual projections (wo, w3)
// scaled by 1/sqrt(2 n_layers), norm gains 1.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/random.hpp>
#include <slim/core/types.hpp>
#include <slim/model/config.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace slim::model {

struct LayerWeights {
  Vector rms_att;  // dim: gain of the RMSNorm before attention ("attention_norm")
  Matrix wq;       // dim x dim
  Matrix wk;       // kv_dim x dim
  Matrix wv;       // kv_dim x dim
  Matrix wo;       // dim x dim
  Vector rms_ffn;  // dim: gain of the RMSNorm before the MLP ("ffn_norm")
  Matrix w1;       // hidden_dim x dim (gate)
  Matrix w2;       // dim x hidden_dim (down)
  Matrix w3;       // hidden_dim x dim (up)
};

struct Weights {
  Config config;
  Matrix token_embedding;  // vocab_size x dim
  std::vector<LayerWeights> layers;
  Vector rms_final;  // dim
  Matrix wcls;       // vocab_size x dim when !config.shared_classifier; empty (0 x 0) when tied

  // The classifier actually used: wcls, or token_embedding when the classifier is tied.
  const Matrix& classifier() const { return config.shared_classifier ? token_embedding : wcls; }

  // All parameters zero, shaped for `config` (a gradient accumulator has this form).
  static Weights zeros(const Config& config) {
    config.validate();
    Weights w;
    w.config = config;
    const Index d = config.dim, kv = config.kv_dim(), h = config.hidden_dim;
    w.token_embedding = Matrix::Zero(config.vocab_size, d);
    w.layers.resize(static_cast<std::size_t>(config.n_layers));
    for (auto& l : w.layers) {
      l.rms_att = Vector::Zero(d);
      l.wq = Matrix::Zero(d, d);
      l.wk = Matrix::Zero(kv, d);
      l.wv = Matrix::Zero(kv, d);
      l.wo = Matrix::Zero(d, d);
      l.rms_ffn = Vector::Zero(d);
      l.w1 = Matrix::Zero(h, d);
      l.w2 = Matrix::Zero(d, h);
      l.w3 = Matrix::Zero(h, d);
    }
    w.rms_final = Vector::Zero(d);
    if (!config.shared_classifier) w.wcls = Matrix::Zero(config.vocab_size, d);
    return w;
  }

  // llama2.c model.py initialisation, reproducible from `seed`.
  static Weights random(const Config& config, std::uint64_t seed) {
    Weights w = zeros(config);
    random::Generator gen(seed);
    const double stddev = 0.02;
    const double residual_stddev = 0.02 / std::sqrt(2.0 * static_cast<double>(config.n_layers));
    auto fill = [&gen](Matrix& m, double s) {
      for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(s * gen.normal());
    };
    fill(w.token_embedding, stddev);
    for (auto& l : w.layers) {
      l.rms_att.setOnes();
      l.rms_ffn.setOnes();
      fill(l.wq, stddev);
      fill(l.wk, stddev);
      fill(l.wv, stddev);
      fill(l.wo, residual_stddev);
      fill(l.w1, stddev);
      fill(l.w2, stddev);
      fill(l.w3, residual_stddev);
    }
    w.rms_final.setOnes();
    if (!config.shared_classifier) fill(w.wcls, stddev);
    return w;
  }

  // Calls f(name, Eigen::Map<Matrix>) for every parameter in a fixed order (llama2.c's file
  // order: embedding, per-layer blocks, final norm, classifier). Norm gains appear as 1 x dim.
  // Names follow llama2.c's model.py state dict without the ".weight" suffix:
  // "tok_embeddings", "layers.<i>.attention_norm", "layers.<i>.attention.wq" ... "wo",
  // "layers.<i>.ffn_norm", "layers.<i>.feed_forward.w1" ... "w3", "norm", "output".
  template <typename F>
  void for_each_parameter(F&& f) {
    visit(*this, f);
  }
  template <typename F>
  void for_each_parameter(F&& f) const {
    visit(*this, f);
  }

  // Total number of scalar parameters (a tied classifier is counted once).
  Index parameter_count() const {
    Index n = 0;
    for_each_parameter([&n](const std::string&, const auto& p) { n += p.size(); });
    return n;
  }

  // Throws ShapeError naming the first parameter whose shape does not match `config`.
  void validate() const {
    config.validate();
    const Weights expected = zeros(config);
    require<ShapeError>(layers.size() == expected.layers.size(),
                        "model::Weights::validate: ", layers.size(), " layers; expected n_layers ",
                        config.n_layers);
    std::vector<std::pair<Index, Index>> shapes;
    expected.for_each_parameter(
        [&shapes](const std::string&, const auto& p) { shapes.emplace_back(p.rows(), p.cols()); });
    std::size_t k = 0;
    for_each_parameter([&](const std::string& name, const auto& p) {
      require<ShapeError>(
          k < shapes.size() && p.rows() == shapes[k].first && p.cols() == shapes[k].second,
          "model::Weights::validate: parameter ", name, " is ", p.rows(), " x ", p.cols(),
          "; expected ", k < shapes.size() ? shapes[k].first : 0, " x ",
          k < shapes.size() ? shapes[k].second : 0);
      ++k;
    });
    require<ShapeError>(shared_classifier_ok(), "model::Weights::validate: wcls is ", wcls.rows(),
                        " x ", wcls.cols(), " but the classifier is tied; expected it empty");
  }

 private:
  bool shared_classifier_ok() const { return !config.shared_classifier || wcls.size() == 0; }

  template <typename W, typename F>
  static void visit(W& w, F& f) {
    using MapM =
        std::conditional_t<std::is_const_v<W>, Eigen::Map<const Matrix>, Eigen::Map<Matrix>>;
    auto mat = [&f](const std::string& name, auto& m) {
      f(name, MapM(m.data(), m.rows(), m.cols()));
    };
    auto vec = [&f](const std::string& name, auto& v) { f(name, MapM(v.data(), 1, v.size())); };
    mat("tok_embeddings", w.token_embedding);
    for (std::size_t i = 0; i < w.layers.size(); ++i) {
      auto& l = w.layers[i];
      const std::string p = "layers." + std::to_string(i) + ".";
      vec(p + "attention_norm", l.rms_att);
      mat(p + "attention.wq", l.wq);
      mat(p + "attention.wk", l.wk);
      mat(p + "attention.wv", l.wv);
      mat(p + "attention.wo", l.wo);
      vec(p + "ffn_norm", l.rms_ffn);
      mat(p + "feed_forward.w1", l.w1);
      mat(p + "feed_forward.w2", l.w2);
      mat(p + "feed_forward.w3", l.w3);
    }
    vec("norm", w.rms_final);
    if (!w.config.shared_classifier) mat("output", w.wcls);
  }
};

}  // namespace slim::model
