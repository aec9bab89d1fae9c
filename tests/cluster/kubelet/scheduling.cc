#include "tests/cluster/kubelet/scheduling.h"

#include <cstdlib>

namespace parallelrun::rt::cluster {
namespace {

std::string Label(const Json& node, const std::string& key, bool* present) {
  const Json* labels = JsonAt(node, "metadata.labels");
  *present = labels != nullptr && labels->is_object() && labels->contains(key) &&
             (*labels)[key].is_string();
  return *present ? (*labels)[key].get<std::string>() : "";
}

bool ValueIn(const std::string& value, const Json& values) {
  if (!values.is_array()) return false;
  for (const auto& v : values) {
    if (v.is_string() && v.get<std::string>() == value) return true;
  }
  return false;
}

bool ExpressionMatches(const Json& expr, const Json& node, bool field) {
  std::string key = StringAt(expr, "key");
  std::string op = StringAt(expr, "operator");
  const Json values = expr.value("values", Json::array());
  bool present = false;
  std::string value;
  if (field) {
    present = key == "metadata.name";
    value = StringAt(node, "metadata.name");
  } else {
    value = Label(node, key, &present);
  }
  if (op == "In") return present && ValueIn(value, values);
  if (op == "NotIn") return !present || !ValueIn(value, values);
  if (op == "Exists") return present;
  if (op == "DoesNotExist") return !present;
  if (op == "Gt" || op == "Lt") {
    if (!present || values.empty() || !values[0].is_string()) return false;
    long long have = std::atoll(value.c_str());
    long long want = std::atoll(values[0].get<std::string>().c_str());
    return op == "Gt" ? have > want : have < want;
  }
  return false;
}

bool AffinityMatches(const Json& pod, const Json& node) {
  const Json* required =
      JsonAt(pod, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution");
  if (required == nullptr || !required->is_object()) return true;
  const Json terms = required->value("nodeSelectorTerms", Json::array());
  if (!terms.is_array() || terms.empty()) return true;
  for (const auto& term : terms) {  // terms are ORed, expressions ANDed
    bool ok = true;
    for (const auto& expr : term.value("matchExpressions", Json::array())) {
      ok = ok && ExpressionMatches(expr, node, false);
    }
    for (const auto& expr : term.value("matchFields", Json::array())) {
      ok = ok && ExpressionMatches(expr, node, true);
    }
    if (ok) return true;
  }
  return false;
}

}  // namespace

bool Tolerates(const Json& pod, const Json& taint) {
  const Json* tolerations = JsonAt(pod, "spec.tolerations");
  if (tolerations == nullptr || !tolerations->is_array()) return false;
  std::string key = StringAt(taint, "key");
  std::string value = StringAt(taint, "value");
  std::string effect = StringAt(taint, "effect");
  for (const auto& t : *tolerations) {
    std::string t_effect = StringAt(t, "effect");
    if (!t_effect.empty() && t_effect != effect) continue;
    std::string t_key = StringAt(t, "key");
    std::string op = StringAt(t, "operator", "Equal");
    if (op == "Exists") {
      if (t_key.empty() || t_key == key) return true;
    } else if (t_key == key && StringAt(t, "value") == value) {
      return true;
    }
  }
  return false;
}

std::string UnschedulableMessage(const Json& pod, const Json& node) {
  const Json* unschedulable = JsonAt(node, "spec.unschedulable");
  if (unschedulable != nullptr && *unschedulable == true &&
      !Tolerates(pod, {{"key", kUnschedulableTaint}, {"effect", "NoSchedule"}})) {
    return "0/1 nodes are available: 1 node(s) were unschedulable.";
  }
  const Json* selector = JsonAt(pod, "spec.nodeSelector");
  bool selector_ok = true;
  if (selector != nullptr && selector->is_object()) {
    for (const auto& [k, v] : selector->items()) {
      bool present = false;
      if (!v.is_string() || Label(node, k, &present) != v.get<std::string>() || !present) {
        selector_ok = false;
      }
    }
  }
  if (!selector_ok || !AffinityMatches(pod, node)) {
    return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.";
  }
  const Json* taints = JsonAt(node, "spec.taints");
  if (taints != nullptr && taints->is_array()) {
    for (const auto& taint : *taints) {
      std::string effect = StringAt(taint, "effect");
      if (effect != "NoSchedule" && effect != "NoExecute") continue;
      if (StringAt(taint, "key") == kUnschedulableTaint) continue;  // covered by the cordon check
      if (Tolerates(pod, taint)) continue;
      std::string key = StringAt(taint, "key");
      std::string value = StringAt(taint, "value");
      return "0/1 nodes are available: 1 node(s) had untolerated taint {" + key +
             (value.empty() ? "" : ": " + value) + "}.";
    }
  }
  return "";
}

}  // namespace parallelrun::rt::cluster
