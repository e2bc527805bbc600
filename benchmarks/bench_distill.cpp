// Distillation losses and the layer-wise trainer, single-threaded, beside the dense fp32 Eigen
// classifier head that produces the logits they consume: Y = X W^T with 64 tokens, width 512 and a
// vocabulary of 8192. Counter `x_fp32_matmul` is each benchmark's time per iteration divided by
// that matmul's (measured once, best of 20): what a loss (value + gradient) costs next to the
// forward pass of the layer whose outputs it judges.
#include <slim/core.hpp>
#include <slim/distill.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace {

namespace distill = slim::distill;

constexpr slim::Index kTokens = 64, kWidth = 512, kVocab = 8192;

const slim::Matrix& head_weights() {
  static const slim::Matrix w = slim::random::gaussian(kVocab, kWidth, 1, 0.05);
  return w;
}
const slim::Matrix& activations() {
  static const slim::Matrix x = slim::random::gaussian(kTokens, kWidth, 2);
  return x;
}
const slim::Matrix& student_logits() {
  static const slim::Matrix s = slim::random::gaussian(kTokens, kVocab, 3, 2.0);
  return s;
}
const slim::Matrix& teacher_logits() {
  static const slim::Matrix t = slim::random::gaussian(kTokens, kVocab, 4, 2.0);
  return t;
}

double dense_matmul_seconds() {
  static const double seconds = [] {
    Eigen::setNbThreads(1);  // every benchmark here is single-threaded
    slim::Matrix y(kTokens, kVocab);
    double best = 1e30;
    for (int i = 0; i < 20; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      y.noalias() = activations() * head_weights().transpose();
      benchmark::DoNotOptimize(y.data());
      const auto t1 = std::chrono::steady_clock::now();
      best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
    }
    return best;
  }();
  return seconds;
}

template <typename Body>
void run(benchmark::State& state, Body body, std::int64_t items) {
  const double baseline = dense_matmul_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) body();
  const auto t1 = std::chrono::steady_clock::now();
  const double per_iter =
      std::chrono::duration<double>(t1 - t0).count() / static_cast<double>(state.iterations());
  state.counters["x_fp32_matmul"] = per_iter / baseline;
  state.SetItemsProcessed(state.iterations() * items);
}

void BM_DenseClassifierBaseline(benchmark::State& state) {
  slim::Matrix y(kTokens, kVocab);
  run(
      state,
      [&] {
        y.noalias() = activations() * head_weights().transpose();
        benchmark::DoNotOptimize(y.data());
      },
      kTokens * kVocab);
}
BENCHMARK(BM_DenseClassifierBaseline)->Unit(benchmark::kMillisecond);

void BM_KdLoss(benchmark::State& state) {
  const auto divergence = static_cast<distill::Divergence>(state.range(0));
  run(
      state,
      [&] {
        auto loss = distill::kd_loss(student_logits(), teacher_logits(),
                                     {.temperature = 2.0, .divergence = divergence});
        benchmark::DoNotOptimize(loss.gradient.data());
      },
      kTokens * kVocab);
  const char* names[] = {"forward KL", "reverse KL", "Jensen-Shannon"};
  state.SetLabel(names[state.range(0)]);
}
BENCHMARK(BM_KdLoss)->DenseRange(0, 2)->Unit(benchmark::kMillisecond);

void BM_CrossEntropy(benchmark::State& state) {
  slim::IndexVector labels(kTokens);
  for (slim::Index i = 0; i < kTokens; ++i) labels[i] = (i * 7919) % kVocab;
  run(
      state,
      [&] {
        auto loss = distill::cross_entropy(student_logits(), labels);
        benchmark::DoNotOptimize(loss.gradient.data());
      },
      kTokens * kVocab);
}
BENCHMARK(BM_CrossEntropy)->Unit(benchmark::kMillisecond);

void BM_AttentionKl(benchmark::State& state) {
  // 8 heads, 128 tokens, head width 64 (student and teacher).
  std::vector<slim::Matrix> sq, sk, tq, tk;
  for (int h = 0; h < 8; ++h) {
    sq.push_back(slim::random::gaussian(128, 64, 10 + h));
    sk.push_back(slim::random::gaussian(128, 64, 20 + h));
    tq.push_back(slim::random::gaussian(128, 64, 30 + h));
    tk.push_back(slim::random::gaussian(128, 64, 40 + h));
  }
  run(
      state,
      [&] {
        auto loss = distill::attention_kl_loss(sq, sk, tq, tk, {.causal = true});
        benchmark::DoNotOptimize(loss.value);
      },
      8 * 128 * 128);
}
BENCHMARK(BM_AttentionKl)->Unit(benchmark::kMillisecond);

void BM_LayerwiseLowRankStep(benchmark::State& state) {
  // 10 full-batch AdamW steps on a 512 x 512 layer at rank 64, 256 calibration tokens.
  const slim::Matrix x = slim::random::correlated_activations(256, 512, 5);
  const slim::Matrix w = slim::random::gaussian(512, 512, 6, 0.05);
  const slim::Matrix y = x * w.transpose();
  const distill::LayerwiseTrainer trainer(x, y, {.steps = 10});
  slim::Matrix u = slim::random::gaussian(512, 64, 7, 0.1);
  slim::Matrix v = slim::random::gaussian(64, 512, 8, 0.1);
  run(
      state,
      [&] {
        auto result = trainer.fit_low_rank(u, v);
        benchmark::DoNotOptimize(result.final_mse);
      },
      10);
  state.SetLabel("10 steps");
}
BENCHMARK(BM_LayerwiseLowRankStep)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
