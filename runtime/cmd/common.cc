#include <openssl/evp.h>
#include <openssl/rand.h>
#include <signal.h>

#include <cstdio>
#include <thread>

#include "runtime/base/files.h"
#include "runtime/cmd/commands.h"

namespace parallelrun::rt::cmd {

void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A closed pipe or socket is an error to handle, not a reason to die.
  signal(SIGPIPE, SIG_IGN);
}

void StartSignalThread(std::function<void(int)> on_signal) {
  std::thread([on_signal = std::move(on_signal)] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    while (true) {
      int signo = 0;
      if (sigwait(&set, &signo) == 0) on_signal(signo);
    }
  }).detach();
}

std::string LocalOwnerId(const JobSpec& spec) {
  std::string text = ToJson(spec).dump();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr);
  std::string hex = "local-";
  char buf[3];
  for (unsigned int i = 0; i < 16 && i < len; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", digest[i]);
    hex += buf;
  }
  return hex;
}

StatusOr<std::string> ReadTokenFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status().WithContext("--token-file");
  std::string t = *text;
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  size_t start = 0;
  while (start < t.size() && std::isspace(static_cast<unsigned char>(t[start]))) ++start;
  t = t.substr(start);
  if (t.empty()) return InvalidArgumentError("--token-file " + path + " is empty");
  return t;
}

std::string RandomToken(int bytes) {
  std::string raw(static_cast<size_t>(bytes), '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), bytes);
  std::string hex;
  char buf[3];
  for (unsigned char c : raw) {
    std::snprintf(buf, sizeof buf, "%02x", c);
    hex += buf;
  }
  return hex;
}

std::string SpecSummary(const JobSpec& spec) {
  std::string type = spec.input_type() == InputType::kFile ? "file" : "tabular";
  std::string s = spec.name + ": " + std::to_string(spec.inputs.size()) + " " + type + " input" +
                  (spec.inputs.size() == 1 ? "" : "s") + ", " + std::to_string(spec.node_count) +
                  " node" + (spec.node_count == 1 ? "" : "s") + " x " +
                  std::to_string(spec.process_count_per_node) + " process" +
                  (spec.process_count_per_node == 1 ? "" : "es") + ", miniBatchSize " +
                  spec.mini_batch_size_text + ", entry script " + spec.entry_script + ", output " +
                  (spec.output.volume.empty() ? "" : spec.output.volume + ":") + spec.output.path;
  return s;
}

}  // namespace parallelrun::rt::cmd
