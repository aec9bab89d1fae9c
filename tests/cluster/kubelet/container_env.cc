#include "tests/cluster/kubelet/container_env.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <map>
#include <sstream>

namespace parallelrun::rt::cluster {
namespace {

// "metadata.labels['app']" -> {"metadata.labels", "app"}.
bool SplitSubscript(const std::string& path, std::string* base, std::string* key) {
  auto open = path.find("['");
  if (open == std::string::npos || path.size() < open + 4 ||
      path.compare(path.size() - 2, 2, "']") != 0) {
    return false;
  }
  *base = path.substr(0, open);
  *key = path.substr(open + 2, path.size() - open - 4);
  return true;
}

void SetVar(std::vector<std::string>* env, const std::string& name, const std::string& value) {
  for (auto& e : *env) {
    if (e.compare(0, name.size() + 1, name + "=") == 0) {
      e = name + "=" + value;
      return;
    }
  }
  env->push_back(name + "=" + value);
}

// Data of a ConfigMap or Secret as plain strings (Secret data is base64).
std::map<std::string, std::string> ObjectData(const Json& obj, bool secret) {
  std::map<std::string, std::string> out;
  if (auto it = obj.find("data"); it != obj.end() && it->is_object()) {
    for (const auto& [k, v] : it->items()) {
      if (!v.is_string()) continue;
      if (secret) {
        out[k] = Base64Decode(v.get<std::string>()).value_or("");
      } else {
        out[k] = v.get<std::string>();
      }
    }
  }
  if (auto it = obj.find("stringData"); secret && it != obj.end() && it->is_object()) {
    for (const auto& [k, v] : it->items()) {
      if (v.is_string()) out[k] = v.get<std::string>();
    }
  }
  return out;
}

std::string FormatNumber(long double v) {
  long long rounded = static_cast<long long>(std::ceil(v - 1e-9L));
  return std::to_string(rounded);
}

bool ResourceFieldValue(const Json& container, const Json& ref, std::string* value) {
  std::string resource = StringAt(ref, "resource");
  auto dot = resource.find('.');
  if (dot == std::string::npos) return false;
  std::string section = resource.substr(0, dot);  // limits or requests
  std::string name = resource.substr(dot + 1);    // cpu, memory, ephemeral-storage
  std::string quantity = StringAt(container, "resources." + section + "." + name);
  if (quantity.empty()) {
    // Unset limits report the node's allocatable (here: fixed node capacity).
    quantity = name == "cpu" ? "4" : name == "memory" ? "8Gi" : "100Gi";
  }
  auto v = ParseQuantity(quantity);
  auto divisor = ParseQuantity(ref.contains("divisor") && ref["divisor"].is_string()
                                   ? ref["divisor"].get<std::string>()
                                   : "1");
  if (!v || !divisor || *divisor <= 0) return false;
  *value = FormatNumber(*v / *divisor);
  return true;
}

bool OnPath(const std::string& name, const std::string& search_path) {
  if (name.empty()) return false;
  if (name.find('/') != std::string::npos) return true;
  std::stringstream in(search_path);
  std::string dir;
  while (std::getline(in, dir, ':')) {
    std::string path = (dir.empty() ? "." : dir) + "/" + name;
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool FieldPathValue(const Json& pod, const std::string& field_path, std::string* value) {
  std::string base, key;
  if (SplitSubscript(field_path, &base, &key)) {
    if (base != "metadata.labels" && base != "metadata.annotations") return false;
    const Json* map = JsonAt(pod, base);
    *value = map != nullptr && map->contains(key) && (*map)[key].is_string()
                 ? (*map)[key].get<std::string>()
                 : "";
    return true;
  }
  static const char* const kPaths[] = {"metadata.name", "metadata.namespace",      "metadata.uid",
                                       "spec.nodeName", "spec.serviceAccountName", "status.podIP",
                                       "status.hostIP"};
  for (const char* p : kPaths) {
    if (field_path == p) {
      *value = StringAt(pod, field_path);
      return true;
    }
  }
  if (field_path == "status.podIPs") {
    *value = StringAt(pod, "status.podIP");
    return true;
  }
  if (field_path == "status.hostIPs") {
    *value = StringAt(pod, "status.hostIP");
    return true;
  }
  if (field_path == "metadata.labels" || field_path == "metadata.annotations") {
    // The downward-API volume format: key="value" lines, sorted.
    const Json* map = JsonAt(pod, field_path);
    std::string out;
    if (map != nullptr && map->is_object()) {
      for (const auto& [k, v] : map->items()) {
        if (v.is_string()) out += k + "=" + Json(v.get<std::string>()).dump() + "\n";
      }
    }
    *value = out;
    return true;
  }
  return false;
}

std::string ExpandVars(const std::string& in, const std::vector<std::string>& env) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '$' || i + 1 >= in.size()) {
      out.push_back(in[i]);
      continue;
    }
    if (in[i + 1] == '$') {
      out.push_back('$');
      ++i;
      continue;
    }
    if (in[i + 1] == '(') {
      auto close = in.find(')', i + 2);
      if (close != std::string::npos) {
        std::string name = in.substr(i + 2, close - i - 2);
        const std::string* found = nullptr;
        for (const auto& e : env) {
          if (e.size() > name.size() && e.compare(0, name.size() + 1, name + "=") == 0) {
            found = &e;
          }
        }
        if (found != nullptr) {
          out += found->substr(name.size() + 1);
          i = close;
          continue;
        }
      }
    }
    out.push_back(in[i]);
  }
  return out;
}

bool BuildContainerEnv(const Json& pod, const Json& container, const ClusterView& view,
                       const std::vector<std::string>& base_env, std::vector<std::string>* env,
                       std::string* error) {
  const std::string ns = StringAt(pod, "metadata.namespace", "default");
  std::vector<std::string> out = base_env;
  std::string hostname = StringAt(pod, "spec.hostname", StringAt(pod, "metadata.name"));
  SetVar(&out, "HOSTNAME", hostname);
  SetVar(&out, "HOME", "/root");
  if (!view.api_host.empty()) {
    std::string port = std::to_string(view.api_port);
    SetVar(&out, "KUBERNETES_SERVICE_HOST", view.api_host);
    SetVar(&out, "KUBERNETES_SERVICE_PORT", port);
    SetVar(&out, "KUBERNETES_SERVICE_PORT_HTTPS", port);
    SetVar(&out, "KUBERNETES_PORT", "tcp://" + view.api_host + ":" + port);
  }

  auto lookup = [&](const char* resource, const std::string& name,
                    std::optional<Json>* obj) -> bool {
    *obj = view.get ? view.get(resource, ns, name) : std::nullopt;
    return obj->has_value();
  };

  if (auto it = container.find("envFrom"); it != container.end() && it->is_array()) {
    for (const auto& source : *it) {
      std::string prefix = StringAt(source, "prefix");
      bool secret = source.contains("secretRef");
      const Json& ref = secret ? source["secretRef"] : source.value("configMapRef", Json::object());
      std::string name = StringAt(ref, "name");
      bool optional = ref.value("optional", false);
      std::optional<Json> obj;
      if (!lookup(secret ? "secrets" : "configmaps", name, &obj)) {
        if (optional) continue;
        *error = std::string(secret ? "secret" : "configmap") + " \"" + name + "\" not found";
        return false;
      }
      for (const auto& [k, v] : ObjectData(*obj, secret)) SetVar(&out, prefix + k, v);
    }
  }

  if (auto it = container.find("env"); it != container.end() && it->is_array()) {
    for (const auto& var : *it) {
      std::string name = StringAt(var, "name");
      if (name.empty()) continue;
      if (!var.contains("valueFrom")) {
        SetVar(&out, name, ExpandVars(StringAt(var, "value"), out));
        continue;
      }
      const Json& from = var["valueFrom"];
      std::string value;
      if (from.contains("fieldRef")) {
        std::string path = StringAt(from["fieldRef"], "fieldPath");
        if (!FieldPathValue(pod, path, &value)) {
          *error = "env " + name + ": unsupported fieldRef fieldPath \"" + path + "\"";
          return false;
        }
      } else if (from.contains("resourceFieldRef")) {
        if (!ResourceFieldValue(container, from["resourceFieldRef"], &value)) {
          *error =
              "env " + name + ": unsupported resourceFieldRef " + from["resourceFieldRef"].dump();
          return false;
        }
      } else if (from.contains("secretKeyRef") || from.contains("configMapKeyRef")) {
        bool secret = from.contains("secretKeyRef");
        const Json& ref = secret ? from["secretKeyRef"] : from["configMapKeyRef"];
        std::string obj_name = StringAt(ref, "name");
        std::string key = StringAt(ref, "key");
        bool optional = ref.value("optional", false);
        std::optional<Json> obj;
        if (!lookup(secret ? "secrets" : "configmaps", obj_name, &obj)) {
          if (optional) continue;
          *error = std::string(secret ? "secret" : "configmap") + " \"" + obj_name + "\" not found";
          return false;
        }
        auto data = ObjectData(*obj, secret);
        auto found = data.find(key);
        if (found == data.end()) {
          if (optional) continue;
          *error = "couldn't find key " + key + " in " + (secret ? "Secret " : "ConfigMap ") + ns +
                   "/" + obj_name;
          return false;
        }
        value = found->second;
      } else {
        *error = "env " + name +
                 ": valueFrom needs fieldRef, resourceFieldRef, configMapKeyRef "
                 "or secretKeyRef";
        return false;
      }
      SetVar(&out, name, value);
    }
  }
  *env = std::move(out);
  return true;
}

std::vector<std::string> ContainerArgv(const Json& container, const std::vector<std::string>& env,
                                       const std::string& search_path) {
  std::vector<std::string> command, args;
  if (auto it = container.find("command"); it != container.end() && it->is_array()) {
    for (const auto& a : *it)
      command.push_back(ExpandVars(a.is_string() ? a.get<std::string>() : "", env));
  }
  if (auto it = container.find("args"); it != container.end() && it->is_array()) {
    for (const auto& a : *it)
      args.push_back(ExpandVars(a.is_string() ? a.get<std::string>() : "", env));
  }
  if (command.empty() && !args.empty() && OnPath(args[0], search_path)) return args;
  if (command.empty()) {
    std::string image = StringAt(container, "image");
    if (auto at = image.find('@'); at != std::string::npos) image.resize(at);
    if (auto slash = image.rfind('/'); slash != std::string::npos) image = image.substr(slash + 1);
    if (auto colon = image.find(':'); colon != std::string::npos) image.resize(colon);
    if (!image.empty()) command.push_back(image);
  }
  command.insert(command.end(), args.begin(), args.end());
  return command;
}

}  // namespace parallelrun::rt::cluster
