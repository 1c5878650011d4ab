#include "train/distributed.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>

#include "core/error.h"
#include "core/runtime.h"

namespace iidm {

std::optional<DistributedEnv> DistributedEnv::from_environment() {
  DistributedEnv env;
  if (auto rank = env_int("RANK"), world = env_int("WORLD_SIZE"); rank && world) {
    env.rank = *rank;
    env.world_size = *world;
  } else if (auto procid = env_int("SLURM_PROCID"), tasks = env_int("SLURM_NTASKS"); procid && tasks) {
    env.rank = *procid;
    env.world_size = *tasks;
  } else {
    return std::nullopt;
  }
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size)
    fail("distributed: rank {} is not in 0..{}", env.rank, env.world_size - 1);
  if (const char* addr = std::getenv("MASTER_ADDR")) env.master_addr = addr;
  env.master_port = env_int("MASTER_PORT").value_or(env.master_port);
  if (env.world_size == 1) return std::nullopt;
  return env;
}

struct Distributed::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

Distributed::Distributed(const DistributedEnv& env, std::chrono::milliseconds timeout)
    : env_(env), impl_(std::make_unique<Impl>()) {
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(env.master_port);
  store_options.isServer = env.rank == 0;
  store_options.numWorkers = env.world_size;
  store_options.waitWorkers = true;
  store_options.timeout = timeout;
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->timeout = timeout;
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(env.master_addr));
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world_size, options);
  } catch (const std::exception& e) {
    fail("distributed: rank {} of {} could not join {}:{}: {}", env.rank, env.world_size, env.master_addr,
         env.master_port, e.what());
  }
}

Distributed::~Distributed() = default;

void Distributed::broadcast_parameters(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (auto& p : module.parameters()) tensors.push_back(p.data());
  for (auto& b : module.buffers()) tensors.push_back(b);
  for (auto& t : tensors) {
    std::vector<torch::Tensor> one{t};
    impl_->group->broadcast(one)->wait();
  }
}

void Distributed::all_reduce_gradients(const std::vector<torch::Tensor>& params) {
  // One flat buffer: a single collective instead of one per tensor.
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) grads.push_back(p.grad().defined() ? p.grad().reshape({-1}) : torch::zeros({p.numel()}));
  std::vector<torch::Tensor> flat{torch::cat(grads)};
  impl_->group->allreduce(flat)->wait();
  int64_t offset = 0;
  for (const auto& p : params) {
    const int64_t n = p.numel();
    if (p.grad().defined()) p.mutable_grad().copy_(flat[0].narrow(0, offset, n).view_as(p));
    offset += n;
  }
}

double Distributed::all_reduce_sum(double value) {
  std::vector<torch::Tensor> t{torch::tensor({value}, torch::kFloat64)};
  impl_->group->allreduce(t)->wait();
  return t[0].item<double>();
}

void Distributed::barrier() { impl_->group->barrier()->wait(); }

}  // namespace iidm
