// Knowledge distillation of a whole reference decoder: the student is trained on random windows
// of a token stream against the teacher's next-token distribution, with DistilBERT's mix
// alpha * CE(labels) + (1 - alpha) * T^2 KL(softmax(t/T) || softmax(s/T)) (Hinton et al. 2015;
// Sanh et al. 2019; distill/logit_losses.hpp) and the optimiser, clipping and schedule of
// model::train. This is the recovery stage Minitron (Muralidharan et al. 2024, sec. 3) runs after
// structured pruning; with `keep_zeros` the weights that are exactly zero when it starts stay zero
// (sparse fine-tuning after unstructured or N:M pruning, masks fixed).
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/distill/logit_losses.hpp>
#include <slim/model/corpus.hpp>
#include <slim/model/train.hpp>
#include <slim/model/transformer.hpp>

#include <cstdint>
#include <vector>

namespace slim::model {

namespace detail {
// Fine-tuning defaults: a third of the reference models' peak learning rate, short warmup.
inline TrainOptions fine_tuning_options() {
  TrainOptions o;
  o.steps = 200;
  o.batch_size = 16;
  o.learning_rate = 1e-3;
  o.min_learning_rate = 1e-4;
  o.warmup_steps = 20;
  return o;
}
}  // namespace detail

struct DistillOptions {
  TrainOptions train = detail::fine_tuning_options();
  double temperature = 2.0;  // DistilBERT
  double alpha = 0.5;        // weight of the hard-label cross-entropy (0 = pure KD)
  bool keep_zeros = true;    // linear weights that start at exactly zero stay zero
};

// Mean distillation loss of `student` on `inputs` / `targets` against `teacher`'s logits, with its
// gradient added into `gradient` (as Transformer::loss_and_gradient). Both models must share
// vocab_size; the teacher may be any shape and may run replaced (compressed) layers.
inline double distillation_loss_and_gradient(const Transformer& student, const Transformer& teacher,
                                             const TokenBatch& inputs, const TokenBatch& targets,
                                             Weights& gradient, const DistillOptions& options,
                                             int threads = 0) {
  require<ShapeError>(student.config().vocab_size == teacher.config().vocab_size,
                      "model::distill: student vocab_size ", student.config().vocab_size,
                      " differs from the teacher's ", teacher.config().vocab_size);
  require<ShapeError>(inputs.rows() == targets.rows() && inputs.cols() == targets.cols(),
                      "model::distill: targets are ", targets.rows(), " x ", targets.cols(),
                      "; expected the inputs' ", inputs.rows(), " x ", inputs.cols());
  const Matrix teacher_logits = teacher.forward(inputs);  // (batch * tokens) x vocab
  const Index tokens = inputs.cols();
  const float share = 1.0f / static_cast<float>(inputs.rows());
  const distill::DistillationOptions mix{.temperature = options.temperature,
                                         .alpha = options.alpha};
  return student.logit_loss_and_gradient(
      inputs,
      [&](Index b, const Matrix& logits, Matrix& dlogits) {
        IndexVector labels(tokens);
        for (Index t = 0; t < tokens; ++t) labels(t) = targets(b, t);
        const auto loss = distill::distillation_loss(
            logits, teacher_logits.middleRows(b * tokens, tokens), labels, mix);
        dlogits = loss.gradient * share;
        return loss.value * static_cast<double>(share);
      },
      gradient, threads);
}

// Trains `student` in place against `teacher` on random windows of `stream`. Deterministic for a
// given seed and thread count. Throws ArgumentError for a student with replaced layers (the
// backward pass needs dense ones), bad training options, alpha outside [0, 1] or a non-positive
// temperature; ShapeError when the vocabularies differ.
inline TrainResult distill(Transformer& student, const Transformer& teacher,
                           const std::vector<std::int32_t>& stream,
                           const DistillOptions& options = {}) {
  require<ArgumentError>(options.alpha >= 0.0 && options.alpha <= 1.0, "model::distill: alpha ",
                         options.alpha, " is outside [0, 1]");
  require<ArgumentError>(options.temperature > 0.0, "model::distill: temperature ",
                         options.temperature, " must be positive");
  require<ShapeError>(student.config().vocab_size == teacher.config().vocab_size &&
                          student.config().seq_len == teacher.config().seq_len,
                      "model::distill: student (vocab ", student.config().vocab_size, ", seq_len ",
                      student.config().seq_len, ") and teacher (vocab ",
                      teacher.config().vocab_size, ", seq_len ", teacher.config().seq_len,
                      ") must share vocab_size and seq_len");
  // The zero pattern of every linear weight, re-applied after each update.
  std::vector<Matrix*> linears;
  Weights& w = student.weights();
  for (LayerWeights& l : w.layers) {
    for (Matrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) linears.push_back(m);
  }
  if (!student.config().shared_classifier) linears.push_back(&w.wcls);
  std::vector<Eigen::Array<bool, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> zeros;
  if (options.keep_zeros) {
    for (Matrix* m : linears) zeros.push_back(m->array() == 0.0f);
  }
  return detail::optimize(
      student, stream, options.train, "model::distill: ",
      [&](const TokenPairs& batch, Weights& grad) {
        return distillation_loss_and_gradient(student, teacher, batch.inputs, batch.targets, grad,
                                              options, options.train.threads);
      },
      [&] {
        for (std::size_t i = 0; i < zeros.size(); ++i) {
          *linears[i] = zeros[i].select(0.0f, *linears[i]);
        }
      });
}

}  // namespace slim::model
