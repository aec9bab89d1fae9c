// Kubernetes Events about a job (SPEC.md §6): core/v1 Events whose involvedObject carries the
// job's uid, so `kubectl describe prj` lists them. Recording never fails the caller: an Event
// that cannot be written is logged and dropped, as client-go's recorder does.
//
// Aggregation, as client-go's EventCorrelator: an Event identical to one this recorder wrote
// (same object uid, type, reason, message and source) is not written again; the existing one is
// patched with count + 1 and a new lastTimestamp, so `kubectl describe` shows "x2". Should
// that Event be gone (expired), a new one is created.
#pragma once

#include <list>
#include <map>
#include <mutex>
#include <string>

#include "operator/kube/client.h"
#include "runtime/base/time_util.h"

namespace parallelrun::op::status {

struct ObjectRef {
  std::string api_version;
  std::string kind;
  std::string ns;
  std::string name;
  std::string uid;
  std::string resource_version;
};

class EventRecorder {
 public:
  virtual ~EventRecorder() = default;
  // type: "Normal" or "Warning". reason: CamelCase ("PodsCreated").
  virtual void Record(const ObjectRef& object, const std::string& type, const std::string& reason,
                      const std::string& message) = 0;
};

// Writes Events through the API (verb create on core/v1 events) with source.component
// `component` and reportingController `parallelrun.io/operator`.
class KubeEventRecorder : public EventRecorder {
 public:
  KubeEventRecorder(kube::Client& client, const rt::Clock& clock,
                    std::string component = "parallelrun-operator");
  void Record(const ObjectRef& object, const std::string& type, const std::string& reason,
              const std::string& message) override;

 private:
  struct Seen {
    std::string name;  // the Event written for this key
    int64_t count = 1;
    std::list<std::string>::iterator age;  // place in `order_`
  };
  // Patches the Event of `seen` with count + 1; false when it is gone.
  bool Bump(const std::string& ns, Seen& seen, const std::string& stamp);
  void Remember(const std::string& key, std::string name);

  kube::Client& client_;
  const rt::Clock& clock_;
  std::string component_;
  std::mutex mu_;
  std::map<std::string, Seen> seen_;  // at most kMaxRemembered, oldest forgotten first
  std::list<std::string> order_;      // keys, oldest first
  static constexpr size_t kMaxRemembered = 4096;
};

}  // namespace parallelrun::op::status
