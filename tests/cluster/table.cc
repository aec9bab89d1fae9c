#include "tests/cluster/table.h"

#include <functional>

#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace {

using Clock = std::chrono::system_clock;

struct Column {
  std::string name;
  std::string type;    // string, integer, number, boolean, date
  std::string format;  // "name" for the name column
  int priority = 0;
  std::string description;
};

std::string Age(const Json& ts, Clock::time_point now) {
  if (!ts.is_string()) return "<unknown>";
  auto t = ParseRfc3339(ts.get<std::string>());
  if (!t) return "<invalid>";
  return HumanDuration(std::chrono::duration_cast<std::chrono::seconds>(now - *t));
}

std::string Str(const Json& o, const std::string& path, const std::string& fallback = "") {
  const Json* v = JsonPathGet(o, path);
  if (v == nullptr || v->is_null()) return fallback;
  return v->is_string() ? v->get<std::string>() : v->dump();
}

std::string Join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

std::string PodStatus(const Json& pod) {
  std::string reason = Str(pod, ".status.reason", Str(pod, ".status.phase", "Unknown"));
  const Json& status = pod.value("status", Json::object());
  for (const Json& cs : status.value("initContainerStatuses", Json::array())) {
    const Json& st = cs.value("state", Json::object());
    if (st.contains("terminated") && st["terminated"].value("exitCode", 0) != 0) {
      return "Init:" + st["terminated"].value("reason", std::string("Error"));
    }
    if (st.contains("waiting") && st["waiting"].value("reason", "") != "PodInitializing") {
      return "Init:" + st["waiting"].value("reason", std::string("Waiting"));
    }
  }
  bool running = false;
  for (const Json& cs : status.value("containerStatuses", Json::array())) {
    const Json& st = cs.value("state", Json::object());
    if (st.contains("waiting") && !st["waiting"].value("reason", "").empty()) {
      reason = st["waiting"]["reason"];
    } else if (st.contains("terminated")) {
      const Json& term = st["terminated"];
      if (!term.value("reason", "").empty()) {
        reason = term["reason"];
      } else if (term.contains("signal") && term["signal"].get<int>() != 0) {
        reason = "Signal:" + std::to_string(term["signal"].get<int>());
      } else {
        reason = "ExitCode:" + std::to_string(term.value("exitCode", 0));
      }
    } else if (cs.value("ready", false) && st.contains("running")) {
      running = true;
    }
  }
  if (reason == "Completed" && running) reason = "Running";
  if (pod["metadata"].contains("deletionTimestamp")) {
    reason = status.value("reason", "") == "NodeLost" ? "Unknown" : "Terminating";
  }
  return reason;
}

Json PodRow(const Json& pod, Clock::time_point now) {
  const Json& status = pod.value("status", Json::object());
  int total =
      static_cast<int>(pod.value("spec", Json::object()).value("containers", Json::array()).size());
  int ready = 0;
  int64_t restarts = 0;
  for (const Json& cs : status.value("containerStatuses", Json::array())) {
    if (cs.value("ready", false)) ++ready;
    restarts += cs.value("restartCount", int64_t{0});
  }
  return Json::array(
      {pod["metadata"].value("name", ""), std::to_string(ready) + "/" + std::to_string(total),
       PodStatus(pod), restarts, Age(pod["metadata"]["creationTimestamp"], now),
       status.value("podIP", "<none>"), Str(pod, ".spec.nodeName", "<none>"), "<none>", "<none>"});
}

std::string ServicePorts(const Json& svc) {
  std::vector<std::string> out;
  for (const Json& p : svc["spec"].value("ports", Json::array())) {
    std::string s = std::to_string(p.value("port", 0));
    if (p.contains("nodePort")) s += ":" + std::to_string(p["nodePort"].get<int>());
    out.push_back(s + "/" + p.value("protocol", std::string("TCP")));
  }
  return out.empty() ? "<none>" : Join(out, ",");
}

std::string EndpointsList(const Json& ep) {
  std::vector<std::string> out;
  for (const Json& s : ep.value("subsets", Json::array())) {
    for (const Json& a : s.value("addresses", Json::array())) {
      const Json ports = s.value("ports", Json::array());
      if (ports.empty()) {
        out.push_back(a.value("ip", ""));
      }
      for (const Json& p : ports) {
        out.push_back(a.value("ip", "") + ":" + std::to_string(p.value("port", 0)));
      }
    }
  }
  if (out.empty()) return "<none>";
  if (out.size() > 3) {
    return Join({out[0], out[1], out[2]}, ",") + " + " + std::to_string(out.size() - 3) +
           " more...";
  }
  return Join(out, ",");
}

std::string NodeStatus(const Json& node) {
  std::string ready = "Unknown";
  for (const Json& c : node.value("status", Json::object()).value("conditions", Json::array())) {
    if (c.value("type", "") == "Ready")
      ready = c.value("status", "") == "True" ? "Ready" : "NotReady";
  }
  if (node.value("spec", Json::object()).value("unschedulable", false)) {
    ready += ",SchedulingDisabled";
  }
  return ready;
}

std::string NodeRoles(const Json& node) {
  std::vector<std::string> roles;
  const Json labels = node["metadata"].value("labels", Json::object());
  for (const auto& [k, v] : labels.items()) {
    const std::string prefix = "node-role.kubernetes.io/";
    if (k.rfind(prefix, 0) == 0) roles.push_back(k.substr(prefix.size()));
  }
  return roles.empty() ? "<none>" : Join(roles, ",");
}

Json CustomCell(const Json& col, const Json& o, Clock::time_point now) {
  std::string path = col.value("jsonPath", "");
  const Json* v = JsonPathGet(o, path);
  if (v == nullptr || v->is_null()) return Json();
  std::string type = col.value("type", "string");
  if (type == "date") {
    if (!v->is_string()) return Json();
    return Age(*v, now);
  }
  if (type == "integer" && v->is_number()) return v->get<int64_t>();
  if (type == "number" && v->is_number()) return *v;
  if (type == "boolean" && v->is_boolean()) return *v;
  if (v->is_string()) return *v;
  return v->dump();
}

}  // namespace

Json RenderTable(const ResourceType& type, const std::vector<Json>& objects,
                 const Json& list_metadata, Clock::time_point now) {
  std::vector<Column> cols;
  auto name_col = Column{"Name", "string", "name", 0,
                         "Name must be unique within a namespace. More info: "
                         "https://kubernetes.io/docs/concepts/overview/working-with-objects/"
                         "names#names"};
  auto age_col = Column{"Age", "string", "", 0,
                        "CreationTimestamp is a timestamp representing the server time when "
                        "this object was created."};
  auto created_at = Column{"Created At", "date", "", 0,
                           "CreationTimestamp is a timestamp representing the server time when "
                           "this object was created."};
  std::function<Json(const Json&)> row;
  const std::string r = type.resource;
  const bool core = type.group.empty();
  auto age = [now](const Json& o) { return Age(o["metadata"]["creationTimestamp"], now); };
  auto name = [](const Json& o) { return o["metadata"].value("name", ""); };
  auto count = [](const Json& o, const char* field) {
    return static_cast<int64_t>(o.value(field, Json::object()).size());
  };
  if (type.custom) {
    cols.push_back(name_col);
    Json pcs = type.printer_columns.is_array() ? type.printer_columns : Json::array();
    if (pcs.empty()) {
      cols.push_back({"Age", "date", "", 0, age_col.description});
    }
    for (const Json& c : pcs) {
      cols.push_back({c.value("name", ""), c.value("type", "string"), c.value("format", ""),
                      c.value("priority", 0), c.value("description", "")});
    }
    row = [pcs, now, name, age](const Json& o) {
      Json cells = Json::array({name(o)});
      if (pcs.empty()) cells.push_back(age(o));
      for (const Json& c : pcs) cells.push_back(CustomCell(c, o, now));
      return cells;
    };
  } else if (core && r == "pods") {
    cols = {name_col,
            {"Ready", "string", "", 0,
             "The aggregate readiness state of this pod for accepting traffic."},
            {"Status", "string", "", 0, "The aggregate status of the containers in this pod."},
            {"Restarts", "string", "", 0,
             "The number of times the containers in this pod have been restarted and when the last "
             "container in this pod has restarted."},
            age_col,
            {"IP", "string", "", 1, "IP address allocated to the pod."},
            {"Node", "string", "", 1, "Name of the Node the Pod is assigned to."},
            {"Nominated Node", "string", "", 1, "Name of the node nominated for the pod."},
            {"Readiness Gates", "string", "", 1, "The readiness gates of the pod."}};
    row = [now](const Json& o) { return PodRow(o, now); };
  } else if (core && r == "namespaces") {
    cols = {name_col, {"Status", "string", "", 0, "The status of the namespace"}, age_col};
    row = [=](const Json& o) { return Json::array({name(o), Str(o, ".status.phase"), age(o)}); };
  } else if (core && r == "nodes") {
    cols = {
        name_col,
        {"Status", "string", "", 0, "The status of the node"},
        {"Roles", "string", "", 0, "The roles of the node"},
        age_col,
        {"Version", "string", "", 0, "Kubelet Version reported by the node."},
        {"Internal-IP", "string", "", 1, "List of internal IPs."},
        {"External-IP", "string", "", 1, "List of external IPs."},
        {"OS-Image", "string", "", 1, "OS Image reported by the node."},
        {"Kernel-Version", "string", "", 1, "Kernel Version reported by the node."},
        {"Container-Runtime", "string", "", 1, "Container Runtime Version reported by the node."}};
    row = [=](const Json& o) {
      return Json::array({name(o), NodeStatus(o), NodeRoles(o), age(o),
                          Str(o, ".status.nodeInfo.kubeletVersion"), "127.0.0.1", "<none>",
                          Str(o, ".status.nodeInfo.osImage"),
                          Str(o, ".status.nodeInfo.kernelVersion"),
                          Str(o, ".status.nodeInfo.containerRuntimeVersion")});
    };
  } else if (core && r == "services") {
    cols = {name_col,
            {"Type", "string", "", 0, "The type of the service."},
            {"Cluster-IP", "string", "", 0, "The cluster IP of the service."},
            {"External-IP", "string", "", 0, "The external IP of the service."},
            {"Port(s)", "string", "", 0, "The ports of the service."},
            age_col,
            {"Selector", "string", "", 1, "The label selector of the service."}};
    row = [=](const Json& o) {
      std::vector<std::string> sel;
      const Json selector = o["spec"].value("selector", Json::object());
      for (const auto& [k, v] : selector.items()) {
        sel.push_back(k + "=" + (v.is_string() ? v.get<std::string>() : v.dump()));
      }
      return Json::array({name(o), Str(o, ".spec.type"), Str(o, ".spec.clusterIP", "<none>"),
                          "<none>", ServicePorts(o), age(o),
                          sel.empty() ? "<none>" : Join(sel, ",")});
    };
  } else if (core && r == "endpoints") {
    cols = {name_col, {"Endpoints", "string", "", 0, "Endpoints of the service"}, age_col};
    row = [=](const Json& o) { return Json::array({name(o), EndpointsList(o), age(o)}); };
  } else if (core && r == "secrets") {
    cols = {name_col,
            {"Type", "string", "", 0, "The type of the secret"},
            {"Data", "string", "", 0, "The number of entries in the secret"},
            age_col};
    row = [=](const Json& o) {
      return Json::array({name(o), o.value("type", "Opaque"), count(o, "data"), age(o)});
    };
  } else if (core && r == "configmaps") {
    cols = {
        name_col, {"Data", "string", "", 0, "The number of entries in the config map"}, age_col};
    row = [=](const Json& o) {
      return Json::array({name(o), count(o, "data") + count(o, "binaryData"), age(o)});
    };
  } else if (core && r == "serviceaccounts") {
    cols = {name_col, {"Secrets", "string", "", 0, "Secrets is the list of secrets"}, age_col};
    row = [=](const Json& o) {
      return Json::array(
          {name(o), static_cast<int64_t>(o.value("secrets", Json::array()).size()), age(o)});
    };
  } else if (core && r == "persistentvolumeclaims") {
    cols = {name_col,
            {"Status", "string", "", 0, "The status of the claim"},
            {"Volume", "string", "", 0, "The volume bound to the claim"},
            {"Capacity", "string", "", 0, "The capacity of the volume"},
            {"Access Modes", "string", "", 0, "The access modes of the volume"},
            {"StorageClass", "string", "", 0, "The storage class of the claim"},
            {"VolumeAttributesClass", "string", "", 0, "The volume attributes class"},
            age_col,
            {"VolumeMode", "string", "", 1, "The volume mode of the claim"}};
    row = [=](const Json& o) {
      std::vector<std::string> modes;
      for (const Json& m : o.value("status", Json::object()).value("accessModes", Json::array())) {
        std::string s = m.get<std::string>();
        modes.push_back(s == "ReadWriteOnce"   ? "RWO"
                        : s == "ReadOnlyMany"  ? "ROX"
                        : s == "ReadWriteMany" ? "RWX"
                                               : "RWOP");
      }
      return Json::array({name(o), Str(o, ".status.phase"), Str(o, ".spec.volumeName"),
                          Str(o, ".status.capacity.storage"), Join(modes, ","),
                          Str(o, ".spec.storageClassName", "<unset>"), "<unset>", age(o),
                          Str(o, ".spec.volumeMode")});
    };
  } else if (core && r == "events") {
    cols = {{"Last Seen", "string", "", 0, "Time since the event was last seen"},
            {"Type", "string", "", 0, "Type of this event (Normal, Warning)"},
            {"Reason", "string", "", 0, "Why the action was taken"},
            {"Object", "string", "", 0, "The object that this event is about"},
            {"Subobject", "string", "", 1, "The subobject that this event is about"},
            {"Source", "string", "", 1, "The component reporting this event"},
            {"Message", "string", "", 0, "A human-readable description of the event"},
            {"First Seen", "string", "", 1, "Time since the event was first seen"},
            {"Count", "string", "", 1, "How many times the event occurred"},
            {"Name", "string", "name", 1, name_col.description}};
    row = [now, name](const Json& o) {
      Json last =
          o.contains("lastTimestamp") && !o["lastTimestamp"].is_null()
              ? o["lastTimestamp"]
              : (o.contains("eventTime") ? o["eventTime"] : o["metadata"]["creationTimestamp"]);
      Json first = o.contains("firstTimestamp") && !o["firstTimestamp"].is_null()
                       ? o["firstTimestamp"]
                       : last;
      const Json& io = o.value("involvedObject", Json::object());
      return Json::array({Age(last, now), o.value("type", "Normal"), o.value("reason", ""),
                          ToLower(io.value("kind", "")) + "/" + io.value("name", ""),
                          io.value("fieldPath", ""), Str(o, ".source.component"),
                          o.value("message", ""), Age(first, now), o.value("count", 1), name(o)});
    };
  } else if (type.group == "coordination.k8s.io" && r == "leases") {
    cols = {name_col, {"Holder", "string", "", 0, "The holder of the lease"}, age_col};
    row = [=](const Json& o) {
      return Json::array({name(o), Str(o, ".spec.holderIdentity"), age(o)});
    };
  } else if (type.group == "apps" && r == "deployments") {
    cols = {name_col,
            {"Ready", "string", "", 0, "Number of the pod with ready state"},
            {"Up-to-date", "string", "", 0,
             "Total number of non-terminated pods targeted by this deployment that have the "
             "desired template spec."},
            {"Available", "string", "", 0,
             "Total number of available pods (ready for at least minReadySeconds) targeted by this "
             "deployment."},
            age_col,
            {"Containers", "string", "", 1, "Names of each container in the template."},
            {"Images", "string", "", 1, "Images referenced by each container in the template."},
            {"Selector", "string", "", 1, "The label selector for pods."}};
    row = [=](const Json& o) {
      const Json& st = o.value("status", Json::object());
      std::vector<std::string> names, images;
      for (const Json& c : o["spec"]
                               .value("template", Json::object())
                               .value("spec", Json::object())
                               .value("containers", Json::array())) {
        names.push_back(c.value("name", ""));
        images.push_back(c.value("image", ""));
      }
      std::vector<std::string> sel;
      const Json match =
          o["spec"].value("selector", Json::object()).value("matchLabels", Json::object());
      for (const auto& [k, v] : match.items()) {
        sel.push_back(k + "=" + (v.is_string() ? v.get<std::string>() : v.dump()));
      }
      return Json::array({name(o),
                          std::to_string(st.value("readyReplicas", 0)) + "/" +
                              std::to_string(o["spec"].value("replicas", 1)),
                          st.value("updatedReplicas", 0), st.value("availableReplicas", 0), age(o),
                          Join(names, ","), Join(images, ","), Join(sel, ",")});
    };
  } else if (type.group == "apps" && r == "replicasets") {
    cols = {name_col,
            {"Desired", "integer", "", 0, ""},
            {"Current", "integer", "", 0, ""},
            {"Ready", "integer", "", 0, ""},
            age_col};
    row = [=](const Json& o) {
      return Json::array({name(o), o["spec"].value("replicas", 1),
                          o.value("status", Json::object()).value("replicas", 0),
                          o.value("status", Json::object()).value("readyReplicas", 0), age(o)});
    };
  } else if (type.group == "rbac.authorization.k8s.io" &&
             (r == "rolebindings" || r == "clusterrolebindings")) {
    cols = {name_col,
            {"Role", "string", "", 0, "Role for the binding"},
            age_col,
            {"Users", "string", "", 1, ""},
            {"Groups", "string", "", 1, ""},
            {"ServiceAccounts", "string", "", 1, ""}};
    row = [=](const Json& o) {
      std::vector<std::string> users, groups, sas;
      for (const Json& s : o.value("subjects", Json::array())) {
        std::string kind = s.value("kind", "");
        if (kind == "User") users.push_back(s.value("name", ""));
        if (kind == "Group") groups.push_back(s.value("name", ""));
        if (kind == "ServiceAccount") {
          sas.push_back(s.value("namespace", "") + "/" + s.value("name", ""));
        }
      }
      return Json::array({name(o), Str(o, ".roleRef.kind") + "/" + Str(o, ".roleRef.name"), age(o),
                          Join(users, ", "), Join(groups, ", "), Join(sas, ", ")});
    };
  } else if (r == "customresourcedefinitions" || r == "roles" || r == "clusterroles") {
    cols = {name_col, created_at};
    row = [=](const Json& o) {
      return Json::array({name(o), Str(o, ".metadata.creationTimestamp")});
    };
  } else {
    cols = {name_col, age_col};
    row = [=](const Json& o) { return Json::array({name(o), age(o)}); };
  }
  Json defs = Json::array();
  for (const Column& c : cols) {
    defs.push_back({{"name", c.name},
                    {"type", c.type},
                    {"format", c.format},
                    {"description", c.description},
                    {"priority", c.priority}});
  }
  Json rows = Json::array();
  for (const Json& o : objects) {
    rows.push_back({{"cells", row(o)},
                    {"object",
                     {{"kind", "PartialObjectMetadata"},
                      {"apiVersion", "meta.k8s.io/v1"},
                      {"metadata", o.value("metadata", Json::object())}}}});
  }
  Json md = list_metadata.is_object() ? list_metadata : Json::object();
  return {{"kind", "Table"},
          {"apiVersion", "meta.k8s.io/v1"},
          {"metadata", md},
          {"columnDefinitions", defs},
          {"rows", rows}};
}

}  // namespace parallelrun::rt::cluster
