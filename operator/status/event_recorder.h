// Kubernetes Events about a job (SPEC.md §6): core/v1 Events whose involvedObject carries the
// job's uid, so `kubectl describe prj` lists them. Recording never fails the caller: an Event
// that cannot be written is logged and dropped, as client-go's recorder does.
#pragma once

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
  kube::Client& client_;
  const rt::Clock& clock_;
  std::string component_;
};

}  // namespace parallelrun::op::status
