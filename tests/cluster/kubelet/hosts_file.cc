#include "tests/cluster/kubelet/hosts_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace parallelrun::rt::cluster {
namespace {

bool PodReady(const Json& pod) {
  if (StringAt(pod, "status.phase") != "Running") return false;
  const Json* conditions = JsonAt(pod, "status.conditions");
  if (conditions == nullptr || !conditions->is_array()) return false;
  for (const auto& c : *conditions) {
    if (StringAt(c, "type") == "Ready") return StringAt(c, "status") == "True";
  }
  return false;
}

// All DNS forms of `name` (a label path below the namespace) in `ns`.
std::vector<std::string> Names(const std::string& name, const std::string& ns, bool same_ns) {
  std::vector<std::string> out;
  out.push_back(name + "." + ns + ".svc.cluster.local");
  out.push_back(name + "." + ns + ".svc");
  out.push_back(name + "." + ns);
  if (same_ns) out.push_back(name);
  return out;
}

}  // namespace

std::string BuildHostsFile(const Json& pod, const std::string& pod_ip, const HostsInputs& inputs) {
  const std::string ns = StringAt(pod, "metadata.namespace", "default");
  const std::string hostname = StringAt(pod, "spec.hostname", StringAt(pod, "metadata.name"));
  const std::string subdomain = StringAt(pod, "spec.subdomain");
  std::ostringstream out;
  out << "# Kubernetes-managed hosts file (testcluster process kubelet).\n";
  out << "127.0.0.1\tlocalhost\n";
  out << "::1\tlocalhost ip6-localhost ip6-loopback\n";
  if (!pod_ip.empty()) {
    out << pod_ip << "\t";
    if (!subdomain.empty())
      out << hostname << "." << subdomain << "." << ns << ".svc.cluster.local\t";
    out << hostname << "\n";
  }
  if (const Json* aliases = JsonAt(pod, "spec.hostAliases"); aliases && aliases->is_array()) {
    for (const auto& a : *aliases) {
      std::string ip = StringAt(a, "ip");
      if (ip.empty() || !a.contains("hostnames") || !a["hostnames"].is_array()) continue;
      out << ip;
      for (const auto& h : a["hostnames"]) {
        if (h.is_string()) out << "\t" << h.get<std::string>();
      }
      out << "\n";
    }
  }
  if (!inputs.api_host.empty()) {
    out << inputs.api_host;
    for (const auto& n : Names("kubernetes", "default", ns == "default")) out << "\t" << n;
    out << "\n";
  }

  // ip -> names, in a stable order.
  std::map<std::string, std::vector<std::string>> entries;
  std::vector<std::string> order;
  auto add = [&](const std::string& ip, const std::vector<std::string>& names) {
    if (ip.empty()) return;
    if (!entries.count(ip)) order.push_back(ip);
    auto& list = entries[ip];
    list.insert(list.end(), names.begin(), names.end());
  };

  std::map<std::string, std::vector<const Json*>> pods_by_ns;
  for (const auto& p : inputs.pods) {
    pods_by_ns[StringAt(p, "metadata.namespace", "default")].push_back(&p);
  }
  for (const auto& svc : inputs.services) {
    std::string svc_name = StringAt(svc, "metadata.name");
    std::string svc_ns = StringAt(svc, "metadata.namespace", "default");
    if (svc_name.empty() || (svc_name == "kubernetes" && svc_ns == "default")) continue;
    bool same_ns = svc_ns == ns;
    const Json* selector = JsonAt(svc, "spec.selector");
    bool not_ready_too = JsonAt(svc, "spec.publishNotReadyAddresses") != nullptr &&
                         svc["spec"]["publishNotReadyAddresses"] == true;
    if (selector != nullptr && selector->is_object() && !selector->empty()) {
      for (const Json* p : pods_by_ns[svc_ns]) {
        std::string ip = StringAt(*p, "status.podIP");
        if (ip.empty() || JsonAt(*p, "metadata.deletionTimestamp") != nullptr) continue;
        if (!SelectorMatches(
                *selector, p->value("metadata", Json::object()).value("labels", Json::object()))) {
          continue;
        }
        if (!not_ready_too && !PodReady(*p)) continue;
        add(ip, Names(svc_name, svc_ns, same_ns));
        std::string p_host = StringAt(*p, "spec.hostname");
        if (!p_host.empty() && StringAt(*p, "spec.subdomain") == svc_name) {
          add(ip, Names(p_host + "." + svc_name, svc_ns, same_ns));
        }
      }
    } else {
      for (const auto& ep : inputs.endpoints) {
        if (StringAt(ep, "metadata.name") != svc_name ||
            StringAt(ep, "metadata.namespace", "default") != svc_ns) {
          continue;
        }
        const Json* subsets = JsonAt(ep, "subsets");
        if (subsets == nullptr || !subsets->is_array()) continue;
        for (const auto& subset : *subsets) {
          if (!subset.contains("addresses") || !subset["addresses"].is_array()) continue;
          for (const auto& address : subset["addresses"]) {
            add(StringAt(address, "ip"), Names(svc_name, svc_ns, same_ns));
            std::string a_host = StringAt(address, "hostname");
            if (!a_host.empty())
              add(StringAt(address, "ip"), Names(a_host + "." + svc_name, svc_ns, same_ns));
          }
        }
      }
    }
  }
  for (const auto& ip : order) {
    std::set<std::string> seen;
    out << ip;
    for (const auto& n : entries[ip]) {
      if (seen.insert(n).second) out << "\t" << n;
    }
    out << "\n";
  }
  return out.str();
}

bool WriteInPlace(const std::string& path, const std::string& content) {
  {
    std::ifstream in(path, std::ios::binary);
    std::string old((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.is_open() && old == content) return false;
  }
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  // Write first, then cut: a reader sees the old or the new text, not an empty file.
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = pwrite(fd, content.data() + done, content.size() - done, static_cast<off_t>(done));
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  if (ftruncate(fd, static_cast<off_t>(content.size())) != 0) {
    close(fd);
    return false;
  }
  close(fd);
  return true;
}

}  // namespace parallelrun::rt::cluster
