#include "tests/cluster/kubelet/pod_ips.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

namespace parallelrun::rt::cluster {
namespace {

// 254 hosts in each of 254 consecutive /24s.
constexpr uint32_t kHostsPerBlock = 254;
constexpr uint32_t kBlocks = 254;

}  // namespace

PodIpAllocator::PodIpAllocator(const std::string& state_dir) {
  std::string dir = state_dir + "/kubelet";
  std::string path = dir + "/pod-ip-prefix";
  std::ifstream in(path);
  int a = 0, b = -1;
  std::string line;
  if (std::getline(in, line) && std::sscanf(line.c_str(), "127.%d.%d", &a, &b) == 2 && a >= 1 &&
      a <= 254 && b >= 0 && b <= 255) {
    a_ = a;
    b_ = b;
  } else {
    std::random_device rd;
    a_ = 1 + static_cast<int>(rd() % 254);
    b_ = static_cast<int>(rd() % 256);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    std::ofstream(path, std::ios::trunc) << "127." << a_ << "." << b_ << "\n";
  }
  prefix_ = "127." + std::to_string(a_) + "." + std::to_string(b_);
}

std::string PodIpAllocator::Address(uint32_t index) const {
  uint32_t block = index / kHostsPerBlock;
  uint32_t host = index % kHostsPerBlock + 1;
  // Blocks move through the third octet, then wrap into the second (never reaching 0).
  uint32_t third = (static_cast<uint32_t>(b_) + block) % 256;
  uint32_t second =
      (static_cast<uint32_t>(a_) - 1 + (static_cast<uint32_t>(b_) + block) / 256) % 254 + 1;
  return "127." + std::to_string(second) + "." + std::to_string(third) + "." + std::to_string(host);
}

bool PodIpAllocator::IndexOf(const std::string& ip, uint32_t* index) const {
  // Small range: a scan of the blocks is cheap enough and obviously right.
  int o1, o2, o3, o4;
  if (std::sscanf(ip.c_str(), "%d.%d.%d.%d", &o1, &o2, &o3, &o4) != 4 || o1 != 127) return false;
  if (o4 < 1 || o4 > static_cast<int>(kHostsPerBlock)) return false;
  for (uint32_t block = 0; block < kBlocks; ++block) {
    if (Address(block * kHostsPerBlock + static_cast<uint32_t>(o4) - 1) == ip) {
      *index = block * kHostsPerBlock + static_cast<uint32_t>(o4) - 1;
      return true;
    }
  }
  return false;
}

std::string PodIpAllocator::Allocate() {
  const uint32_t total = kHostsPerBlock * kBlocks;
  for (uint32_t i = 0; i < total; ++i) {
    uint32_t index = (next_ + i) % total;
    if (used_.count(index)) continue;
    used_.insert(index);
    next_ = (index + 1) % total;
    return Address(index);
  }
  return "";
}

bool PodIpAllocator::Reserve(const std::string& ip) {
  uint32_t index;
  if (!IndexOf(ip, &index) || used_.count(index)) return false;
  used_.insert(index);
  return true;
}

void PodIpAllocator::Release(const std::string& ip) {
  uint32_t index;
  if (IndexOf(ip, &index)) used_.erase(index);
}

}  // namespace parallelrun::rt::cluster
