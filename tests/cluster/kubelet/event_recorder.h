#pragma once
// core/v1 Events about objects, as a real component writes them: involvedObject (kind,
// apiVersion, namespace, name, uid, resourceVersion, fieldPath), source {component, host},
// first/lastTimestamp and count. A repeat of the same reason and message for the same object is
// folded into the existing Event (count + 1, new lastTimestamp) instead of a new one.
//
// Not thread-safe: one recorder per thread that records.

#include <cstdint>
#include <map>
#include <string>

#include "tests/cluster/api.h"

namespace parallelrun::rt::cluster {

class EventRecorder {
 public:
  EventRecorder(Api* api, std::string component, std::string host);

  // `object` is the involved object (kind and apiVersion from `kind`/`api_version`, the rest
  // from its metadata). Failures are ignored: events are best-effort, as on a real cluster.
  void Record(const Json& object, const std::string& kind, const std::string& api_version,
              const std::string& type, const std::string& reason, const std::string& message,
              const std::string& field_path = "");

 private:
  struct Seen {
    std::string ns;
    std::string name;
    int64_t count = 0;
  };

  Api* api_;
  std::string component_;
  std::string host_;
  uint64_t sequence_ = 0;
  std::map<std::string, Seen> seen_;
};

}  // namespace parallelrun::rt::cluster
