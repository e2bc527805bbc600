// Storage that turns sparsity into bytes saved. CsrMatrix: compressed sparse rows of an out x in
// weight (fp32 values, column indices in 16 bits when in_features <= 65536, else 32, 32-bit row
// offsets). NmMatrix: N:M compressed rows (n fp32 values of every m inputs, plus each value's
// position inside its group in ceil(log2 m) bits, 2 bits for 2:4 as in NVIDIA's sparse tensor
// core format), packed LSB-first into 32-bit words, floor(32 / bits) codes per word, each row
// starting on a fresh word. WindowedCsrMatrix: CSR whose column index is split into a window of
// 32 inputs (one 8-bit count per row and window) and an 8-bit offset inside that window, so a
// kernel holds the window's 32 inputs in two registers and selects from them with a permute
// instead of a gather. bytes() counts every stored byte; bits_per_weight() divides by out*in.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/prune/mask.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace slim::prune {

class CsrMatrix {
 public:
  CsrMatrix() = default;

  // The nonzero entries of W.
  static CsrMatrix from_dense(const Eigen::Ref<const Matrix>& w) {
    return build(
        w, [&](Index r, Index c) { return w(r, c) != 0.0f; }, "CsrMatrix::from_dense");
  }
  // The entries of W that `mask` keeps (stored even when their value is zero).
  static CsrMatrix from_mask(const Eigen::Ref<const Matrix>& w, const Mask& mask) {
    require<ShapeError>(mask.rows() == w.rows() && mask.cols() == w.cols(),
                        "CsrMatrix::from_mask: mask is ", mask.rows(), " x ", mask.cols(),
                        "; expected W's ", w.rows(), " x ", w.cols());
    return build(
        w, [&](Index r, Index c) { return mask.kept(r, c); }, "CsrMatrix::from_mask");
  }

  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  Index nonzeros() const { return static_cast<Index>(values_.size()); }
  bool narrow_indices() const { return cols_ <= 65536; }

  const std::vector<float>& values() const { return values_; }
  const std::vector<std::uint32_t>& row_offsets() const { return row_offsets_; }  // rows + 1
  const std::vector<std::uint16_t>& indices16() const { return indices16_; }
  const std::vector<std::uint32_t>& indices32() const { return indices32_; }
  // Column index of stored entry k (whichever width is in use).
  Index column(std::size_t k) const {
    return narrow_indices() ? Index(indices16_[k]) : Index(indices32_[k]);
  }

  Matrix to_dense() const {
    Matrix w = Matrix::Zero(rows_, cols_);
    for (Index r = 0; r < rows_; ++r) {
      for (std::uint32_t k = row_offsets_[std::size_t(r)]; k < row_offsets_[std::size_t(r) + 1];
           ++k)
        w(r, column(k)) = values_[k];
    }
    return w;
  }

  std::size_t bytes() const {
    return values_.size() * sizeof(float) + indices16_.size() * sizeof(std::uint16_t) +
           indices32_.size() * sizeof(std::uint32_t) + row_offsets_.size() * sizeof(std::uint32_t);
  }
  double bits_per_weight() const {
    return 8.0 * static_cast<double>(bytes()) / static_cast<double>(rows_ * cols_);
  }

 private:
  template <typename Keep>
  static CsrMatrix build(const Eigen::Ref<const Matrix>& w, Keep keep, const char* fn) {
    require_nonempty(w, fn);
    require_finite(w, fn);
    require<ShapeError>(w.cols() <= Index(std::numeric_limits<std::uint32_t>::max()), fn,
                        ": in_features ", w.cols(), " exceeds 32-bit column indices");
    CsrMatrix m;
    m.rows_ = w.rows();
    m.cols_ = w.cols();
    m.row_offsets_.reserve(std::size_t(m.rows_) + 1);
    m.row_offsets_.push_back(0);
    for (Index r = 0; r < m.rows_; ++r) {
      for (Index c = 0; c < m.cols_; ++c) {
        if (!keep(r, c)) continue;
        m.values_.push_back(w(r, c));
        if (m.narrow_indices()) {
          m.indices16_.push_back(static_cast<std::uint16_t>(c));
        } else {
          m.indices32_.push_back(static_cast<std::uint32_t>(c));
        }
      }
      require<ShapeError>(m.values_.size() <= std::numeric_limits<std::uint32_t>::max(), fn,
                          ": more than 2^32 stored entries");
      m.row_offsets_.push_back(static_cast<std::uint32_t>(m.values_.size()));
    }
    return m;
  }

  Index rows_ = 0;
  Index cols_ = 0;
  std::vector<float> values_;
  std::vector<std::uint32_t> row_offsets_;
  std::vector<std::uint16_t> indices16_;
  std::vector<std::uint32_t> indices32_;
};

// Unstructured sparse rows in windows of kWindow = 32 inputs: for every row and window the number
// of kept entries (8 bits), and for every kept entry its fp32 value and its column offset inside
// the window (8 bits), both in row-major, column-increasing order; 32-bit row offsets into the
// entries. The entry arrays end with kPadding zero entries so that 16-wide loads past a row's
// last entry (two 16-wide steps) stay inside the allocation (counted by bytes()). At 80% sparsity
// it stores 0.2 * 40 + 8 / 32 = 8.25 bits per weight (CSR with 16-bit indices: 9.6).
class WindowedCsrMatrix {
 public:
  static constexpr Index kWindow = 32;
  static constexpr std::size_t kPadding = 32;

  WindowedCsrMatrix() = default;

  // The nonzero entries of W.
  static WindowedCsrMatrix from_dense(const Eigen::Ref<const Matrix>& w) {
    return build(
        w, [&](Index r, Index c) { return w(r, c) != 0.0f; }, "WindowedCsrMatrix::from_dense");
  }
  // The entries of W that `mask` keeps (stored even when their value is zero).
  static WindowedCsrMatrix from_mask(const Eigen::Ref<const Matrix>& w, const Mask& mask) {
    require<ShapeError>(mask.rows() == w.rows() && mask.cols() == w.cols(),
                        "WindowedCsrMatrix::from_mask: mask is ", mask.rows(), " x ", mask.cols(),
                        "; expected W's ", w.rows(), " x ", w.cols());
    return build(
        w, [&](Index r, Index c) { return mask.kept(r, c); }, "WindowedCsrMatrix::from_mask");
  }

  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  Index windows_per_row() const { return (cols_ + kWindow - 1) / kWindow; }
  Index nonzeros() const { return Index(values_.size() - (values_.empty() ? 0 : kPadding)); }

  // Entry arrays (nonzeros() entries followed by kPadding zero entries).
  const std::vector<float>& values() const { return values_; }
  const std::vector<std::uint8_t>& offsets() const { return offsets_; }
  // Kept entries of row r in window q: counts()[r * windows_per_row() + q].
  const std::vector<std::uint8_t>& counts() const { return counts_; }
  const std::vector<std::uint32_t>& row_offsets() const { return row_offsets_; }  // rows + 1

  Matrix to_dense() const {
    Matrix w = Matrix::Zero(rows_, cols_);
    for (Index r = 0; r < rows_; ++r) {
      std::size_t k = row_offsets_[std::size_t(r)];
      for (Index q = 0; q < windows_per_row(); ++q) {
        for (unsigned i = 0; i < counts_[std::size_t(r * windows_per_row() + q)]; ++i, ++k)
          w(r, q * kWindow + offsets_[k]) = values_[k];
      }
    }
    return w;
  }

  std::size_t bytes() const {
    return values_.size() * sizeof(float) + offsets_.size() + counts_.size() +
           row_offsets_.size() * sizeof(std::uint32_t);
  }
  double bits_per_weight() const {
    return 8.0 * static_cast<double>(bytes()) / static_cast<double>(rows_ * cols_);
  }

 private:
  template <typename Keep>
  static WindowedCsrMatrix build(const Eigen::Ref<const Matrix>& w, Keep keep, const char* fn) {
    require_nonempty(w, fn);
    require_finite(w, fn);
    WindowedCsrMatrix m;
    m.rows_ = w.rows();
    m.cols_ = w.cols();
    const Index windows = m.windows_per_row();
    m.counts_.assign(std::size_t(m.rows_ * windows), 0);
    m.row_offsets_.reserve(std::size_t(m.rows_) + 1);
    m.row_offsets_.push_back(0);
    for (Index r = 0; r < m.rows_; ++r) {
      for (Index c = 0; c < m.cols_; ++c) {
        if (!keep(r, c)) continue;
        m.values_.push_back(w(r, c));
        m.offsets_.push_back(static_cast<std::uint8_t>(c % kWindow));
        ++m.counts_[std::size_t(r * windows + c / kWindow)];
      }
      require<ShapeError>(m.values_.size() <= std::numeric_limits<std::uint32_t>::max(), fn,
                          ": more than 2^32 stored entries");
      m.row_offsets_.push_back(static_cast<std::uint32_t>(m.values_.size()));
    }
    m.values_.resize(m.values_.size() + kPadding, 0.0f);
    m.offsets_.resize(m.offsets_.size() + kPadding, 0);
    return m;
  }

  Index rows_ = 0;
  Index cols_ = 0;
  std::vector<float> values_;
  std::vector<std::uint8_t> offsets_;
  std::vector<std::uint8_t> counts_;
  std::vector<std::uint32_t> row_offsets_;
};

// N:M storage: per row, n values in every group of m inputs (values_per_row = cols / m * n) and
// each value's position inside its group (0..m-1) in ceil(log2 m) bits, floor(32 / bits)
// positions per 32-bit word.
//
// Layout (tiled for the GEMV kernel): rows are grouped in blocks of kRowBlock = 8 (the last block
// may hold fewer, rb rows) and each row's values cut in chunks of kChunk = 32 (the last chunk may
// be shorter, len values). A block stores its chunks one after the other and, inside a chunk, its
// rows one after the other: value k of row r = 8 b + i is at
//   b * 8 * values_per_row + q * 32 * rb + i * len + (k - 32 q),   q = k / 32,
// and its position code is at the same index of the code stream. The 2:4 kernel then reads one
// contiguous stream per block while it reuses each load of x for 8 rows (measured on Zen 4 at
// 4096 x 4096: 1.65-1.75x of dense fp32 against 1.45-1.55x when the same kernel read 8 separate
// row streams). Use value() / code() / for_each_in_row() or the row-major copies, never index the
// arrays by row.
class NmMatrix {
 public:
  static constexpr Index kRowBlock = 8;
  static constexpr Index kChunk = 32;

  NmMatrix() = default;

  // W restricted to an N:M mask (at most n kept in every group of m inputs). Groups with fewer
  // than n kept entries are padded with explicit zeros at their first unused positions.
  static NmMatrix from_mask(const Eigen::Ref<const Matrix>& w, const Mask& mask, Index n, Index m) {
    require<ShapeError>(mask.rows() == w.rows() && mask.cols() == w.cols(),
                        "NmMatrix::from_mask: mask is ", mask.rows(), " x ", mask.cols(),
                        "; expected W's ", w.rows(), " x ", w.cols());
    return build(
        w, [&](Index r, Index c) { return mask.kept(r, c); }, n, m, "NmMatrix::from_mask");
  }
  // The nonzero entries of W, which must hold at most n nonzeros in every group of m inputs.
  static NmMatrix from_dense(const Eigen::Ref<const Matrix>& w, Index n, Index m) {
    return build(
        w, [&](Index r, Index c) { return w(r, c) != 0.0f; }, n, m, "NmMatrix::from_dense");
  }

  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  Index n() const { return n_; }
  Index m() const { return m_; }
  int index_bits() const { return bits_; }
  int codes_per_word() const { return 32 / bits_; }
  Index values_per_row() const { return cols_ / m_ * n_; }
  // Words per row of the row-major code layout (row_major_codes, the model file's tensor).
  Index words_per_row() const {
    return (values_per_row() + codes_per_word() - 1) / codes_per_word();
  }

  // Index of value k of row r in values() and in the code stream (see the layout above).
  Index index_of(Index r, Index k) const {
    const Index vpr = values_per_row();
    const Index block = r / kRowBlock;
    const Index q = k / kChunk;
    return block * kRowBlock * vpr + q * kChunk * block_rows(block) +
           (r % kRowBlock) * chunk_length(q) + (k - q * kChunk);
  }
  float value(Index r, Index k) const { return values_[std::size_t(index_of(r, k))]; }
  // Position inside its group (0..m-1) of value k of row r.
  Index code(Index r, Index k) const { return code_at(index_of(r, k)); }
  // Position code stored at storage index p.
  Index code_at(Index p) const {
    const std::uint32_t word = codes_[std::size_t(p / codes_per_word())];
    return Index((word >> (bits_ * (p % codes_per_word()))) & ((1u << bits_) - 1u));
  }
  // Rows in block b (kRowBlock except maybe the last); values in chunk q of a row.
  Index block_rows(Index b) const { return std::min(kRowBlock, rows_ - b * kRowBlock); }
  Index chunk_length(Index q) const { return std::min(kChunk, values_per_row() - q * kChunk); }

  // Calls f(k, value, position) for the values of row r in order of k.
  template <typename F>
  void for_each_in_row(Index r, F&& f) const {
    const Index vpr = values_per_row();
    const Index block = r / kRowBlock;
    const Index rb = block_rows(block);
    const Index i = r % kRowBlock;
    for (Index q = 0; q * kChunk < vpr; ++q) {
      const Index len = chunk_length(q);
      const Index base = block * kRowBlock * vpr + q * kChunk * rb + i * len;
      for (Index j = 0; j < len; ++j)
        f(q * kChunk + j, values_[std::size_t(base + j)], code_at(base + j));
    }
  }

  // The tiled arrays (see the layout above).
  const float* values() const { return values_.data(); }
  const std::uint32_t* codes() const { return codes_.data(); }
  std::size_t value_count() const { return values_.size(); }

  // Row-major copies: values [rows x values_per_row] and codes [rows x words_per_row] words, each
  // row's codes starting a new word (the model file's layout).
  std::vector<float> row_major_values() const {
    std::vector<float> out(values_.size());
    for (Index r = 0; r < rows_; ++r)
      for_each_in_row(
          r, [&](Index k, float v, Index) { out[std::size_t(r * values_per_row() + k)] = v; });
    return out;
  }
  std::vector<std::uint32_t> row_major_codes() const {
    std::vector<std::uint32_t> out(std::size_t(rows_ * words_per_row()), 0u);
    const int per_word = codes_per_word();
    for (Index r = 0; r < rows_; ++r)
      for_each_in_row(r, [&](Index k, float, Index pos) {
        out[std::size_t(r * words_per_row() + k / per_word)] |= std::uint32_t(pos)
                                                                << (bits_ * (k % per_word));
      });
    return out;
  }

  Matrix to_dense() const {
    Matrix w = Matrix::Zero(rows_, cols_);
    for (Index r = 0; r < rows_; ++r)
      for_each_in_row(r, [&](Index k, float v, Index pos) { w(r, (k / n_) * m_ + pos) += v; });
    return w;
  }

  std::size_t bytes() const {
    return values_.size() * sizeof(float) + codes_.size() * sizeof(std::uint32_t);
  }
  double bits_per_weight() const {
    return 8.0 * static_cast<double>(bytes()) / static_cast<double>(rows_ * cols_);
  }

 private:
  template <typename Keep>
  static NmMatrix build(const Eigen::Ref<const Matrix>& w, Keep keep, Index n, Index m,
                        const char* fn) {
    require_nonempty(w, fn);
    require_finite(w, fn);
    require<ArgumentError>(m >= 1 && m <= 256, fn, ": N:M group length m ", m,
                           " is outside 1..256");
    require<ArgumentError>(n >= 1 && n <= m, fn, ": N:M keeps n ", n, " of m ", m,
                           "; expected 1 <= n <= m");
    require<ArgumentError>(w.cols() % m == 0, fn, ": N:M group length m ", m,
                           " does not divide in_features ", w.cols());
    NmMatrix out;
    out.rows_ = w.rows();
    out.cols_ = w.cols();
    out.n_ = n;
    out.m_ = m;
    out.bits_ = 1;
    while ((Index(1) << out.bits_) < m) ++out.bits_;
    const Index count = out.rows_ * out.values_per_row();
    const Index per_word = out.codes_per_word();
    out.values_.assign(std::size_t(count), 0.0f);
    out.codes_.assign(std::size_t((count + per_word - 1) / per_word), 0u);
    std::vector<Index> positions;
    for (Index r = 0; r < out.rows_; ++r) {
      for (Index g = 0; g < out.cols_ / m; ++g) {
        positions.clear();
        for (Index j = 0; j < m; ++j) {
          if (keep(r, g * m + j)) positions.push_back(j);
        }
        require<ArgumentError>(Index(positions.size()) <= n, fn, ": row ", r, " group ", g,
                               " keeps ", positions.size(), " weights; expected at most n ", n,
                               " of every m ", m);
        // Pad with the first unused positions (zero values), keeping positions increasing.
        for (Index j = 0; Index(positions.size()) < n; ++j) {
          if (std::find(positions.begin(), positions.end(), j) == positions.end()) {
            positions.insert(std::upper_bound(positions.begin(), positions.end(), j), j);
          }
        }
        for (Index i = 0; i < n; ++i) {
          const Index p = out.index_of(r, g * n + i);
          const Index j = positions[std::size_t(i)];
          out.values_[std::size_t(p)] = keep(r, g * m + j) ? w(r, g * m + j) : 0.0f;
          out.codes_[std::size_t(p / per_word)] |= std::uint32_t(j) << (out.bits_ * (p % per_word));
        }
      }
    }
    return out;
  }

  Index rows_ = 0;
  Index cols_ = 0;
  Index n_ = 0;
  Index m_ = 0;
  int bits_ = 1;
  std::vector<float> values_;
  std::vector<std::uint32_t> codes_;
};

}  // namespace slim::prune
