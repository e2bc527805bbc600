// SparseLinear: a pruned layer stored as CSR, windowed CSR or compressed N:M
// (slim/prune/sparse_storage.hpp) that computes Y = X W^T through the sparse kernels
// (slim/kernels/sparse.hpp): GEMV for a single token, GEMM otherwise. bytes() is the storage's
// true size. An unstructured mask is stored as CSR unless the caller asks for the windowed format
// (UnstructuredFormat::windowed) or lets the density choose (UnstructuredFormat::fastest).
#pragma once

#include <slim/core/linear.hpp>
#include <slim/kernels/sparse.hpp>
#include <slim/prune/mask.hpp>
#include <slim/prune/sparse_storage.hpp>

#include <sstream>
#include <string>
#include <utility>
#include <variant>

namespace slim::prune {

// Storage of an unstructured mask. `fastest` picks windowed CSR when at least kWindowedMinDensity
// of the weights are kept. Measured by bench_sparse (4096 x 4096 GEMV, 1 thread, Zen 4): speed-up
// over dense fp32 of windowed / CSR 0.66 / 0.68x at 50% sparsity, 2.1 / 1.0x at 70%, 2.8 / 1.75x
// at 80%, 2.6 / 3.6x at 90% (few entries per window leave the permute lanes idle, while CSR's
// gathers shrink with the entries); the 85% cut between the last two is not measured.
enum class UnstructuredFormat { csr, windowed, fastest };

class SparseLinear final : public LinearLayer {
 public:
  explicit SparseLinear(CsrMatrix storage, kernels::SparseKernelOptions options = {})
      : storage_(std::move(storage)), options_(options) {}
  explicit SparseLinear(NmMatrix storage, kernels::SparseKernelOptions options = {})
      : storage_(std::move(storage)), options_(options) {}
  explicit SparseLinear(WindowedCsrMatrix storage, kernels::SparseKernelOptions options = {})
      : storage_(std::move(storage)), options_(options) {}

  static constexpr double kWindowedMinDensity = 0.15;

  // The weights `mask` keeps, as CSR (default), windowed CSR, or whichever is faster for the
  // mask's density.
  static SparseLinear unstructured(const Eigen::Ref<const Matrix>& w, const Mask& mask,
                                   UnstructuredFormat format = UnstructuredFormat::csr) {
    if (format == UnstructuredFormat::fastest) {
      const double density =
          mask.rows() * mask.cols() == 0
              ? 0.0
              : double(mask.kept_count()) / (double(mask.rows()) * double(mask.cols()));
      format =
          density >= kWindowedMinDensity ? UnstructuredFormat::windowed : UnstructuredFormat::csr;
    }
    if (format == UnstructuredFormat::windowed) {
      return SparseLinear(WindowedCsrMatrix::from_mask(w, mask));
    }
    return SparseLinear(CsrMatrix::from_mask(w, mask));
  }
  // Compressed N:M of the weights `mask` keeps (at most n of every m).
  static SparseLinear n_m(const Eigen::Ref<const Matrix>& w, const Mask& mask, Index n, Index m) {
    return SparseLinear(NmMatrix::from_mask(w, mask, n, m));
  }

  Index in_features() const override {
    return std::visit([](const auto& s) { return s.cols(); }, storage_);
  }
  Index out_features() const override {
    return std::visit([](const auto& s) { return s.rows(); }, storage_);
  }
  void forward(const Eigen::Ref<const Matrix>& x, Matrix& y) const override {
    check_input(x);
    if (const auto* csr = std::get_if<CsrMatrix>(&storage_)) {
      if (x.rows() == 1) {
        y.resize(1, csr->rows());
        const Matrix row = x;  // contiguous copy of the single token
        kernels::csr_gemv(*csr, row.data(), y.data(), options_);
      } else {
        y = kernels::csr_gemm(*csr, x, options_);
      }
      return;
    }
    if (const auto* windowed = std::get_if<WindowedCsrMatrix>(&storage_)) {
      if (x.rows() == 1) {
        y.resize(1, windowed->rows());
        const Matrix row = x;
        kernels::windowed_gemv(*windowed, row.data(), y.data(), options_);
      } else {
        y = kernels::windowed_gemm(*windowed, x, options_);
      }
      return;
    }
    const auto& nm = std::get<NmMatrix>(storage_);
    if (x.rows() == 1) {
      y.resize(1, nm.rows());
      const Matrix row = x;
      kernels::nm_gemv(nm, row.data(), y.data(), options_);
    } else {
      y = kernels::nm_gemm(nm, x, options_);
    }
  }
  std::size_t bytes() const override {
    return std::visit([](const auto& s) { return s.bytes(); }, storage_);
  }
  std::string describe() const override {
    std::ostringstream out;
    if (const auto* csr = std::get_if<CsrMatrix>(&storage_)) {
      const double density = double(csr->nonzeros()) / (double(csr->rows()) * double(csr->cols()));
      out << "sparse CSR fp32 " << 100.0 * (1.0 - density) << "%";
    } else if (const auto* windowed = std::get_if<WindowedCsrMatrix>(&storage_)) {
      const double density =
          double(windowed->nonzeros()) / (double(windowed->rows()) * double(windowed->cols()));
      out << "sparse windowed CSR fp32 " << 100.0 * (1.0 - density) << "%";
    } else {
      const auto& nm = std::get<NmMatrix>(storage_);
      out << "sparse " << nm.n() << ":" << nm.m() << " fp32";
    }
    return out.str();
  }

  const std::variant<CsrMatrix, NmMatrix, WindowedCsrMatrix>& storage() const { return storage_; }

 private:
  std::variant<CsrMatrix, NmMatrix, WindowedCsrMatrix> storage_;
  kernels::SparseKernelOptions options_;
};

}  // namespace slim::prune
