// SparseLinear: a pruned layer stored as CSR or compressed N:M (slim/prune/sparse_storage.hpp)
// that computes Y = X W^T through the sparse kernels (slim/kernels/sparse.hpp): GEMV for a single
// token, GEMM otherwise. bytes() is the storage's true size.
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

class SparseLinear final : public LinearLayer {
 public:
  explicit SparseLinear(CsrMatrix storage, kernels::SparseKernelOptions options = {})
      : storage_(std::move(storage)), options_(options) {}
  explicit SparseLinear(NmMatrix storage, kernels::SparseKernelOptions options = {})
      : storage_(std::move(storage)), options_(options) {}

  // CSR of the weights `mask` keeps.
  static SparseLinear unstructured(const Eigen::Ref<const Matrix>& w, const Mask& mask) {
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
    } else {
      const auto& nm = std::get<NmMatrix>(storage_);
      out << "sparse " << nm.n() << ":" << nm.m() << " fp32";
    }
    return out.str();
  }

  const std::variant<CsrMatrix, NmMatrix>& storage() const { return storage_; }

 private:
  std::variant<CsrMatrix, NmMatrix> storage_;
  kernels::SparseKernelOptions options_;
};

}  // namespace slim::prune
