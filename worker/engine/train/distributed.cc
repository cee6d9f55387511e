#include "worker/engine/train/distributed.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>

#if defined(ALIGN_HAVE_GLOO)
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(ALIGN_HAVE_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace align::engine::train {
namespace {

class SingleProcess final : public Collective {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  absl::Status AllReduceSum(std::vector<at::Tensor>&) override { return absl::OkStatus(); }
  absl::Status Broadcast(std::vector<at::Tensor>&) override { return absl::OkStatus(); }
  absl::Status Barrier() override { return absl::OkStatus(); }
};

#if defined(ALIGN_HAVE_GLOO)
// One c10d group per device type: Gloo for CPU tensors (and barriers), NCCL for CUDA tensors in
// CUDA builds (created on first use, on a store prefix of its own).
class C10dCollective final : public Collective {
 public:
  C10dCollective(c10::intrusive_ptr<c10d::Store> store, int rank, int world,
                 c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo, std::chrono::milliseconds timeout)
      : store_(std::move(store)), rank_(rank), world_(world), gloo_(std::move(gloo)),
        timeout_(timeout) {}
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  absl::Status AllReduceSum(std::vector<at::Tensor>& tensors) override {
    return Each(tensors, "all-reduce", [&](c10d::ProcessGroup& pg, at::Tensor& flat) {
      std::vector<at::Tensor> v{flat};
      c10d::AllreduceOptions o;
      o.reduceOp = c10d::ReduceOp::SUM;
      pg.allreduce(v, o)->wait(timeout_);
    });
  }
  absl::Status Broadcast(std::vector<at::Tensor>& tensors) override {
    return Each(tensors, "broadcast", [&](c10d::ProcessGroup& pg, at::Tensor& flat) {
      std::vector<at::Tensor> v{flat};
      c10d::BroadcastOptions o;
      o.rootRank = 0;
      pg.broadcast(v, o)->wait(timeout_);
    });
  }
  absl::Status Barrier() override {
    try {
      gloo_->barrier()->wait(timeout_);
    } catch (const std::exception& e) {
      return Failed("barrier", e);
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Failed(const std::string& what, const std::exception& e) const {
    const auto* ce = dynamic_cast<const c10::Error*>(&e);
    return absl::UnavailableError(absl::StrCat(
        "data-parallel ", what, " failed on rank ", rank_, " of ", world_, " (a peer exited or "
        "timed out?): ", ce != nullptr ? ce->what_without_backtrace() : e.what()));
  }

  c10d::ProcessGroup& GroupFor(const at::Tensor& t) {
#if defined(ALIGN_HAVE_NCCL)
    if (t.is_cuda()) {
      if (!nccl_) {
        auto prefixed = c10::make_intrusive<c10d::PrefixStore>("nccl", store_);
        auto o = c10d::ProcessGroupNCCL::Options::create();
        o->timeout = timeout_;
        nccl_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank_, world_, o);
      }
      return *nccl_;
    }
#endif
    return *gloo_;
  }

  // Packs the tensors of each (dtype, device) into one flat buffer, runs `op` on it and copies
  // the result back, so a model's hundreds of gradients cost one exchange.
  template <typename Op>
  absl::Status Each(std::vector<at::Tensor>& tensors, const std::string& what, Op op) {
    try {
      at::NoGradGuard no_grad;
      std::map<std::pair<int, std::string>, std::vector<size_t>> groups;
      for (size_t i = 0; i < tensors.size(); ++i) {
        groups[{static_cast<int>(tensors[i].scalar_type()), tensors[i].device().str()}].push_back(i);
      }
      for (auto& [key, idx] : groups) {
        std::vector<at::Tensor> parts;
        for (size_t i : idx) parts.push_back(tensors[i].detach().reshape({-1}));
        at::Tensor flat = parts.size() == 1 ? parts[0].contiguous().clone() : at::cat(parts);
        op(GroupFor(flat), flat);
        int64_t off = 0;
        for (size_t i : idx) {
          const int64_t n = tensors[i].numel();
          tensors[i].detach().copy_(flat.narrow(0, off, n).view(tensors[i].sizes()));
          off += n;
        }
      }
    } catch (const std::exception& e) {
      return Failed(what, e);
    }
    return absl::OkStatus();
  }

  c10::intrusive_ptr<c10d::Store> store_;
  int rank_, world_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo_;
#if defined(ALIGN_HAVE_NCCL)
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl_;
#endif
  std::chrono::milliseconds timeout_;
};

bool IsLoopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

absl::StatusOr<std::unique_ptr<Collective>> Connect(c10::intrusive_ptr<c10d::Store> store, int rank,
                                                    int world, std::chrono::milliseconds timeout,
                                                    const std::string& addr, const std::string& where) {
  // `timeout` bounds the rendezvous (the store's waits); a collective may wait much longer, e.g.
  // at the barrier while rank 0 saves a large checkpoint.
  const std::chrono::milliseconds op_timeout = std::max<std::chrono::milliseconds>(
      timeout, std::chrono::minutes(30));
  try {
    store->setTimeout(timeout);
    auto o = c10d::ProcessGroupGloo::Options::create(op_timeout);
    // The address peers reach this rank on: GLOO_SOCKET_IFNAME when set, loopback when the group
    // is on one machine, else this host's name.
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname) {
      o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (IsLoopback(addr)) {
      o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    o->threads = 2;
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("gloo", store);
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, world, o);
    return std::unique_ptr<Collective>(
        std::make_unique<C10dCollective>(std::move(store), rank, world, std::move(gloo), op_timeout));
  } catch (const std::exception& e) {
    const auto* ce = dynamic_cast<const c10::Error*>(&e);
    return absl::UnavailableError(absl::StrCat(
        "data-parallel rendezvous at ", where, " failed for rank ", rank, " of ", world,
        " within ", timeout.count() / 1000, " s (did every rank start?): ",
        ce != nullptr ? ce->what_without_backtrace() : e.what()));
  }
}

#else
absl::Status Unavailable(int world_size) {
  return absl::FailedPreconditionError(absl::StrCat(
      "WORLD_SIZE=", world_size, ": data-parallel training is not available in this build of "
      "align-train (built without the gloo headers: apt-get install libgloo-dev and rebuild); "
      "set resources.ranks: 1"));
}
#endif  // ALIGN_HAVE_GLOO

}  // namespace

bool DataParallelAvailable() {
#if defined(ALIGN_HAVE_GLOO)
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Collective> SingleProcessCollective() { return std::make_unique<SingleProcess>(); }

absl::StatusOr<std::unique_ptr<Collective>> ConnectTcp(const std::string& master_addr, int master_port,
                                                       int rank, int world_size,
                                                       std::chrono::milliseconds timeout) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("RANK=", rank, " WORLD_SIZE=", world_size, ": need 0 <= RANK < WORLD_SIZE"));
  }
  if (master_port <= 0 || master_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("MASTER_PORT=", master_port, ": not a TCP port (1-65535)"));
  }
#if !defined(ALIGN_HAVE_GLOO)
  return Unavailable(world_size);
#else
  const std::string where = absl::StrCat(master_addr, ":", master_port);
  c10::intrusive_ptr<c10d::Store> store;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(master_port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<std::size_t>(world_size);
    so.waitWorkers = true;
    so.timeout = timeout;
    store = c10::make_intrusive<c10d::TCPStore>(master_addr, so);
  } catch (const std::exception& e) {
    const auto* ce = dynamic_cast<const c10::Error*>(&e);
    return absl::UnavailableError(absl::StrCat(
        "data-parallel rendezvous: rank ", rank, " of ", world_size, " could not ",
        rank == 0 ? "serve or gather peers at " : "reach the TCP store at ", where, " within ",
        timeout.count() / 1000, " s (check MASTER_ADDR/MASTER_PORT and that every rank started): ",
        ce != nullptr ? ce->what_without_backtrace() : e.what()));
  }
  return Connect(std::move(store), rank, world_size, timeout, master_addr, where);
#endif
}

absl::StatusOr<std::unique_ptr<Collective>> ConnectInProcess(const std::string& name, int rank,
                                                             int world_size,
                                                             std::chrono::milliseconds timeout) {
#if !defined(ALIGN_HAVE_GLOO)
  (void)name, (void)rank, (void)timeout;
  return Unavailable(world_size);
#else
  static std::mutex mu;
  static auto* stores = new std::map<std::string, c10::intrusive_ptr<c10d::Store>>();
  c10::intrusive_ptr<c10d::Store> store;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto& s = (*stores)[name];
    if (!s) s = c10::make_intrusive<c10d::HashStore>();
    store = s;
  }
  return Connect(std::move(store), rank, world_size, timeout, "127.0.0.1",
                 absl::StrCat("in-process group '", name, "'"));
#endif
}

absl::StatusOr<std::unique_ptr<Collective>> CollectiveFromEnv(int rank, int world_size) {
  if (world_size <= 1) return SingleProcessCollective();
  const char* addr = std::getenv("MASTER_ADDR");
  const char* port = std::getenv("MASTER_PORT");
  int p = 29500;
  if (port != nullptr && *port && !absl::SimpleAtoi(port, &p)) {
    return absl::InvalidArgumentError(absl::StrCat("MASTER_PORT='", port, "': not a number"));
  }
  int timeout_s = 300;
  if (const char* t = std::getenv("ALIGN_DIST_TIMEOUT_S"); t != nullptr && *t) {
    if (!absl::SimpleAtoi(t, &timeout_s) || timeout_s <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("ALIGN_DIST_TIMEOUT_S='", t, "': not a positive number of seconds"));
    }
  }
  return ConnectTcp(addr != nullptr && *addr ? addr : "127.0.0.1", p, rank, world_size,
                    std::chrono::seconds(timeout_s));
}

}  // namespace align::engine::train
