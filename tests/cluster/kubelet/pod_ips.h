#pragma once
// Pod IPs in 127.0.0.0/8: each cluster draws a random /16 prefix 127.A.B (A >= 1, so never
// 127.0.0.x) once and keeps it in DIR/kubelet/pod-ip-prefix, so clusters running side by side
// hand out different addresses and a server bound to a pod IP in one cannot collide with
// another's. Addresses go round-robin through 127.A.B.1 .. 127.A.B.254, then 127.A.(B+1).x, ...,
// skipping those in use, so a freed address is not handed out again at once.
//
// Not thread-safe (the kubelet's sync thread owns it).

#include <cstdint>
#include <set>
#include <string>

namespace parallelrun::rt::cluster {

class PodIpAllocator {
 public:
  // Reads or creates the prefix file under `state_dir`/kubelet.
  explicit PodIpAllocator(const std::string& state_dir);

  // A free address; "" when all 64516 of the prefix are in use.
  std::string Allocate();
  // Takes `ip` if it belongs to this cluster's range and is free (a pod that already had it
  // before a restart); false otherwise.
  bool Reserve(const std::string& ip);
  void Release(const std::string& ip);

  const std::string& prefix() const { return prefix_; }  // "127.A.B"

 private:
  std::string Address(uint32_t index) const;
  bool IndexOf(const std::string& ip, uint32_t* index) const;

  std::string prefix_;
  int a_ = 1;
  int b_ = 0;
  uint32_t next_ = 0;
  std::set<uint32_t> used_;
};

}  // namespace parallelrun::rt::cluster
