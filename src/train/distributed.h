#pragma once
// Multi-process data parallelism on PyTorch's own engine (c10d): a TCPStore rendezvous and a Gloo
// process group on CPU (NCCL would serve CUDA builds). LibTorch's C++ API has no DDP module, so
// the trainer broadcasts parameters from rank 0 once and all-reduces gradients after backward.
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>

namespace iidm {

struct DistributedEnv {
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int rank = 0, world_size = 1;
  // torchrun-style MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, or Slurm's SLURM_PROCID,
  // SLURM_NTASKS (with MASTER_ADDR / MASTER_PORT or their defaults). nullopt: not distributed.
  static std::optional<DistributedEnv> from_environment();
};

class Distributed {
 public:
  explicit Distributed(const DistributedEnv& env, std::chrono::milliseconds timeout = std::chrono::seconds(120));
  ~Distributed();
  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }

  void broadcast_parameters(torch::nn::Module& module);
  // Sums gradients over processes (the trainer already divides by the global batch).
  void all_reduce_gradients(const std::vector<torch::Tensor>& params);
  double all_reduce_sum(double value);
  void barrier();

 private:
  struct Impl;
  DistributedEnv env_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace iidm
