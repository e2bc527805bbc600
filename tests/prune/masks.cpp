#include <slim/calib.hpp>
#include <slim/prune.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
using slim::Vector;
using slim::prune::Mask;
using slim::prune::Pattern;
using slim::prune::Scope;

Index round_half_up(double x) { return static_cast<Index>(std::floor(x + 0.5)); }

// Largest pruned and smallest kept value of `scores` over the cells where `in_group` holds.
template <typename InGroup>
std::pair<double, double> pruned_max_kept_min(const Matrix& scores, const Mask& mask,
                                              InGroup in_group) {
  double pruned_max = -std::numeric_limits<double>::infinity();
  double kept_min = std::numeric_limits<double>::infinity();
  for (Index r = 0; r < scores.rows(); ++r) {
    for (Index c = 0; c < scores.cols(); ++c) {
      if (!in_group(r, c)) continue;
      if (mask.kept(r, c)) {
        kept_min = std::min<double>(kept_min, scores(r, c));
      } else {
        pruned_max = std::max<double>(pruned_max, scores(r, c));
      }
    }
  }
  return {pruned_max, kept_min};
}

TEST(Mask, UnstructuredPerLayerPrunesExactCountOfSmallestMagnitudes) {
  const Matrix w = slim::random::student_t(16, 64, 4, 1);
  for (double s : {0.0, 0.3, 0.5, 0.8, 0.97}) {
    const Mask mask = slim::prune::magnitude_mask(w, {.pattern = Pattern::unstructured(s)});
    EXPECT_EQ(mask.pruned_count(), round_half_up(s * 16 * 64)) << "sparsity " << s;
    const auto [pruned_max, kept_min] =
        pruned_max_kept_min(w.cwiseAbs(), mask, [](Index, Index) { return true; });
    EXPECT_LE(pruned_max, kept_min) << "sparsity " << s;
  }
}

TEST(Mask, UnstructuredPerRowPrunesExactCountInEveryRow) {
  const Matrix w = slim::random::student_t(16, 64, 4, 2);
  const Mask mask = slim::prune::magnitude_mask(
      w, {.pattern = Pattern::unstructured(0.3), .scope = Scope::per_row});
  for (Index r = 0; r < w.rows(); ++r) {
    EXPECT_EQ(64 - mask.matrix().row(r).cast<Index>().sum(), round_half_up(0.3 * 64));
    const auto [pruned_max, kept_min] =
        pruned_max_kept_min(w.cwiseAbs(), mask, [r](Index rr, Index) { return rr == r; });
    EXPECT_LE(pruned_max, kept_min);
  }
}

TEST(Mask, NmKeepsExactlyNLargestInEveryGroup) {
  const Matrix w = slim::random::gaussian(8, 64, 3);
  for (auto [n, m] : std::vector<std::pair<Index, Index>>{{2, 4}, {4, 8}, {1, 4}, {4, 4}}) {
    const Mask mask = slim::prune::magnitude_mask(w, {.pattern = Pattern::n_m(n, m)});
    EXPECT_TRUE(slim::prune::satisfies_n_m(mask, n, m));
    EXPECT_DOUBLE_EQ(mask.sparsity(), 1.0 - double(n) / double(m));
    for (Index r = 0; r < w.rows(); ++r) {
      for (Index g = 0; g < w.cols(); g += m) {
        EXPECT_EQ(mask.matrix().row(r).segment(g, m).cast<Index>().sum(), n);
        const auto [pruned_max, kept_min] = pruned_max_kept_min(
            w.cwiseAbs(), mask, [&](Index rr, Index c) { return rr == r && c >= g && c < g + m; });
        EXPECT_LE(pruned_max, kept_min);
      }
    }
  }
}

TEST(Mask, StructuredPatternsPruneWholeRowsColumnsAndHeads) {
  const Matrix scores = slim::random::gaussian(24, 40, 4).cwiseAbs();
  const Vector row_sums = scores.rowwise().sum();
  const Vector col_sums = scores.colwise().sum().transpose();

  const Mask rows = slim::prune::select_mask(scores, Pattern::rows(0.25));
  Index pruned_rows = 0;
  for (Index r = 0; r < 24; ++r) {
    const Index kept = rows.matrix().row(r).cast<Index>().sum();
    EXPECT_TRUE(kept == 0 || kept == 40);
    pruned_rows += kept == 0 ? 1 : 0;
  }
  EXPECT_EQ(pruned_rows, 6);
  for (Index a = 0; a < 24; ++a) {
    for (Index b = 0; b < 24; ++b) {
      if (!rows.kept(a, 0) && rows.kept(b, 0)) {
        EXPECT_LE(row_sums(a), row_sums(b));
      }
    }
  }

  const Mask cols = slim::prune::select_mask(scores, Pattern::columns(0.5));
  Index pruned_cols = 0;
  for (Index c = 0; c < 40; ++c) {
    const Index kept = cols.matrix().col(c).cast<Index>().sum();
    EXPECT_TRUE(kept == 0 || kept == 24);
    pruned_cols += kept == 0 ? 1 : 0;
  }
  EXPECT_EQ(pruned_cols, 20);
  for (Index a = 0; a < 40; ++a) {
    for (Index b = 0; b < 40; ++b) {
      if (!cols.kept(0, a) && cols.kept(0, b)) {
        EXPECT_LE(col_sums(a), col_sums(b));
      }
    }
  }

  const Mask heads = slim::prune::select_mask(scores, Pattern::heads(0.5, 6));
  Vector head_sums(4);
  for (Index h = 0; h < 4; ++h) head_sums(h) = row_sums.segment(6 * h, 6).sum();
  Index pruned_heads = 0;
  for (Index h = 0; h < 4; ++h) {
    const Index kept = heads.matrix().middleRows(6 * h, 6).cast<Index>().sum();
    EXPECT_TRUE(kept == 0 || kept == 6 * 40);
    pruned_heads += kept == 0 ? 1 : 0;
  }
  EXPECT_EQ(pruned_heads, 2);
  for (Index a = 0; a < 4; ++a) {
    for (Index b = 0; b < 4; ++b) {
      if (!heads.kept(6 * a, 0) && heads.kept(6 * b, 0)) {
        EXPECT_LE(head_sums(a), head_sums(b));
      }
    }
  }
}

TEST(Mask, TiesArePrunedLowerIndexFirst) {
  const Matrix equal = Matrix::Ones(4, 8);
  const Mask layer = slim::prune::select_mask(equal, Pattern::unstructured(0.25));
  for (Index i = 0; i < 32; ++i) EXPECT_EQ(layer.kept(i / 8, i % 8), i >= 8) << i;

  const Mask row = slim::prune::select_mask(equal, Pattern::unstructured(0.25), Scope::per_row);
  for (Index r = 0; r < 4; ++r) {
    for (Index c = 0; c < 8; ++c) EXPECT_EQ(row.kept(r, c), c >= 2);
  }
  const Mask nm = slim::prune::select_mask(equal, Pattern::n_m(1, 4));
  for (Index c = 0; c < 8; ++c) EXPECT_EQ(nm.kept(0, c), c % 4 == 3);

  // Signs tie in magnitude; the same input always gives the same mask.
  Matrix signs(2, 4);
  signs << 1, -1, 1, -1, -1, 1, -1, 1;
  const Mask a = slim::prune::magnitude_mask(signs, {.pattern = Pattern::unstructured(0.5)});
  const Mask b = slim::prune::magnitude_mask(signs, {.pattern = Pattern::unstructured(0.5)});
  EXPECT_EQ(a, b);
  for (Index c = 0; c < 4; ++c) EXPECT_FALSE(a.kept(0, c));
}

TEST(Mask, ApplyZeroesExactlyThePrunedWeights) {
  const Matrix w = slim::random::gaussian(6, 12, 5);
  const auto result = slim::prune::magnitude(w, {.pattern = Pattern::n_m(2, 4)});
  for (Index r = 0; r < 6; ++r) {
    for (Index c = 0; c < 12; ++c) {
      EXPECT_EQ(result.weight(r, c), result.mask.kept(r, c) ? w(r, c) : 0.0f);
    }
  }
}

TEST(Magnitude, GlobalThresholdIsSharedAcrossLayers) {
  std::vector<Matrix> layers{slim::random::gaussian(8, 32, 6, 1.0),
                             slim::random::gaussian(16, 16, 7, 10.0),
                             slim::random::gaussian(4, 64, 8, 0.1)};
  const auto masks = slim::prune::magnitude_mask_global(layers, 0.6);
  ASSERT_EQ(masks.size(), 3u);
  Index pruned = 0;
  double pruned_max = 0.0;
  double kept_min = std::numeric_limits<double>::infinity();
  for (std::size_t l = 0; l < 3; ++l) {
    pruned += masks[l].pruned_count();
    for (Index i = 0; i < layers[l].size(); ++i) {
      const double v = std::abs(layers[l].data()[i]);
      if (masks[l].kept(i / layers[l].cols(), i % layers[l].cols())) {
        kept_min = std::min(kept_min, v);
      } else {
        pruned_max = std::max(pruned_max, v);
      }
    }
  }
  EXPECT_EQ(pruned, round_half_up(0.6 * 768));
  EXPECT_LE(pruned_max, kept_min);
  // The large-scale layer loses fewer weights than the small-scale one.
  EXPECT_LT(masks[1].sparsity(), masks[0].sparsity());
  EXPECT_LT(masks[0].sparsity(), masks[2].sparsity());
}

TEST(Magnitude, GradualScheduleFollowsTheCubicRamp) {
  const slim::prune::GradualSchedule s{.initial_sparsity = 0.1,
                                       .final_sparsity = 0.9,
                                       .begin_step = 1000,
                                       .steps = 8,
                                       .frequency = 50};
  EXPECT_DOUBLE_EQ(slim::prune::gradual_sparsity(0, s), 0.1);
  EXPECT_DOUBLE_EQ(slim::prune::gradual_sparsity(1000, s), 0.1);
  EXPECT_DOUBLE_EQ(slim::prune::gradual_sparsity(1000 + 8 * 50, s), 0.9);
  EXPECT_DOUBLE_EQ(slim::prune::gradual_sparsity(100000, s), 0.9);
  for (int k = 0; k <= 8; ++k) {
    const double expected = 0.9 + (0.1 - 0.9) * std::pow(1.0 - k / 8.0, 3);
    EXPECT_NEAR(slim::prune::gradual_sparsity(1000 + 50 * k, s), expected, 1e-12) << k;
    // Constant between pruning steps.
    if (k < 8) {
      EXPECT_NEAR(slim::prune::gradual_sparsity(1000 + 50 * k + 49, s), expected, 1e-12) << k;
    }
  }
  double previous = 0.0;
  for (int t = 0; t < 1600; t += 7) {
    const double v = slim::prune::gradual_sparsity(t, s);
    EXPECT_GE(v, previous);
    previous = v;
  }
}

TEST(Wanda, ScoresAreMagnitudeTimesChannelNormComparedPerRow) {
  const Matrix x = slim::random::correlated_activations(200, 32, 9);
  const Matrix w = slim::random::gaussian(8, 32, 10);
  slim::calib::ActivationStats stats(32);
  stats.add(x.topRows(50));
  stats.add(x.bottomRows(150));
  const auto result = slim::prune::wanda(w, stats, {.pattern = Pattern::unstructured(0.5)});
  // Oracle: each row's 16 smallest |W_ij| * ||X_j|| by a full sort.
  for (Index r = 0; r < 8; ++r) {
    std::vector<std::pair<double, Index>> scores;
    for (Index j = 0; j < 32; ++j) {
      scores.emplace_back(std::abs(double(w(r, j))) * x.col(j).cast<double>().norm(), j);
    }
    std::sort(scores.begin(), scores.end());
    for (Index k = 0; k < 32; ++k) {
      EXPECT_EQ(result.mask.kept(r, scores[std::size_t(k)].second), k >= 16) << r << " " << k;
    }
  }
  EXPECT_EQ(result.weight, result.mask.apply(w));
}

TEST(Wanda, EqualsPerRowMagnitudeWhenChannelNormsAreEqualAndKeepsOutlierChannels) {
  const Matrix w = slim::random::gaussian(8, 32, 11);
  const auto wanda =
      slim::prune::wanda(w, Vector::Constant(32, 3.0f), {.pattern = Pattern::unstructured(0.5)});
  const auto magnitude =
      slim::prune::magnitude(w, {.pattern = Pattern::unstructured(0.5), .scope = Scope::per_row});
  EXPECT_EQ(wanda.mask, magnitude.mask);

  Vector norms = Vector::Ones(32);
  norms(5) = 1e4f;
  const auto nm = slim::prune::wanda(w, norms, {.pattern = Pattern::n_m(2, 4)});
  EXPECT_TRUE(slim::prune::satisfies_n_m(nm.mask, 2, 4));
  for (Index r = 0; r < 8; ++r) EXPECT_TRUE(nm.mask.kept(r, 5));
}

TEST(PruneBadInput, RejectsSparsityOutsideUnitIntervalAndInvalidNm) {
  const Matrix w = slim::random::gaussian(4, 8, 12);
  using slim::ArgumentError;
  using slim::prune::magnitude;
  EXPECT_THROW(magnitude(w, {.pattern = Pattern::unstructured(-0.1)}), ArgumentError);
  EXPECT_THROW(magnitude(w, {.pattern = Pattern::unstructured(1.0)}), ArgumentError);
  EXPECT_THROW(magnitude(w, {.pattern = Pattern::unstructured(std::nan(""))}), ArgumentError);
  EXPECT_THROW(magnitude(w, {.pattern = Pattern::n_m(4, 2)}), ArgumentError);
  EXPECT_THROW(magnitude(w, {.pattern = Pattern::n_m(0, 4)}), ArgumentError);
  EXPECT_THROW(magnitude(w, {.pattern = Pattern::n_m(2, 3)}),
               ArgumentError);  // 3 does not divide 8
  EXPECT_THROW(magnitude(w, {.pattern = Pattern::n_m(1, 0)}), ArgumentError);
  EXPECT_THROW(magnitude(w, {.pattern = Pattern::heads(0.5, 3)}), ArgumentError);  // 3 ∤ 4 rows
  EXPECT_THROW(magnitude(w, {.pattern = Pattern::heads(0.5, 0)}), ArgumentError);
  EXPECT_THROW(magnitude(w, {.pattern = Pattern::rows(1.5)}), ArgumentError);
  EXPECT_THROW(slim::prune::magnitude_mask_global({}, 0.5), ArgumentError);
  EXPECT_THROW(slim::prune::magnitude_mask_global({w}, 1.0), ArgumentError);
  EXPECT_THROW(slim::prune::gradual_sparsity(5, {.steps = 0}), ArgumentError);
  EXPECT_THROW(slim::prune::gradual_sparsity(5, {.final_sparsity = 1.0}), ArgumentError);
}

TEST(PruneBadInput, RejectsNonFiniteWeightsWrongShapesAndBadNorms) {
  Matrix w = slim::random::gaussian(4, 8, 13);
  const Mask mask(4, 8);
  EXPECT_THROW(mask.apply(Matrix::Zero(4, 7)), slim::ShapeError);
  EXPECT_THROW(slim::prune::magnitude(Matrix(0, 8)), slim::ShapeError);
  EXPECT_THROW(slim::prune::wanda(w, Vector::Ones(7)), slim::ShapeError);
  Vector negative = Vector::Ones(8);
  negative(2) = -1.0f;
  EXPECT_THROW(slim::prune::wanda(w, negative), slim::ArgumentError);
  slim::calib::ActivationStats empty(8);
  EXPECT_THROW(slim::prune::wanda(w, empty), slim::ArgumentError);
  w(1, 3) = std::numeric_limits<float>::infinity();
  EXPECT_THROW(slim::prune::magnitude(w), slim::NumericalError);
  EXPECT_THROW(slim::prune::wanda(w, Vector::Ones(8)), slim::NumericalError);
}

}  // namespace
