#include "tests/cluster/auth.h"

#include <algorithm>

#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace {

bool Contains(const Json& list, const std::string& value) {
  if (!list.is_array()) return false;
  for (const Json& v : list) {
    if (v.is_string() && (v == "*" || v == value)) return true;
  }
  return false;
}

bool SubjectMatches(const Json& subject, const UserInfo& user) {
  std::string kind = subject.value("kind", "");
  std::string name = subject.value("name", "");
  if (kind == "User") return name == user.name;
  if (kind == "Group") {
    return std::find(user.groups.begin(), user.groups.end(), name) != user.groups.end();
  }
  if (kind == "ServiceAccount") {
    return user.name == "system:serviceaccount:" + subject.value("namespace", "") + ":" + name;
  }
  return false;
}

bool RuleAllows(const Json& rule, const RequestAttributes& a) {
  if (!Contains(rule.value("verbs", Json::array()), a.verb)) return false;
  if (!a.resource_request) {
    for (const Json& u : rule.value("nonResourceURLs", Json::array())) {
      std::string pattern = u.get<std::string>();
      if (pattern == "*" || pattern == a.path) return true;
      if (!pattern.empty() && pattern.back() == '*' &&
          a.path.rfind(pattern.substr(0, pattern.size() - 1), 0) == 0) {
        return true;
      }
    }
    return false;
  }
  if (!Contains(rule.value("apiGroups", Json::array()), a.group)) return false;
  std::string res = a.subresource.empty() ? a.resource : a.resource + "/" + a.subresource;
  bool resource_ok = false;
  for (const Json& r : rule.value("resources", Json::array())) {
    std::string s = r.get<std::string>();
    if (s == "*" || s == res) resource_ok = true;
    if (!a.subresource.empty() && s == "*/" + a.subresource) resource_ok = true;
    if (!a.subresource.empty() && s == a.resource + "/*") resource_ok = true;
  }
  if (!resource_ok) return false;
  Json names = rule.value("resourceNames", Json::array());
  if (!names.empty()) {
    if (a.name.empty()) return false;
    return Contains(names, a.name);
  }
  return true;
}

}  // namespace

bool UserInfo::IsMaster() const {
  return std::find(groups.begin(), groups.end(), "system:masters") != groups.end();
}

Authorizer::Authorizer(ApiServer* api, std::string admin_token)
    : api_(api), admin_token_(std::move(admin_token)) {}

bool Authorizer::Authenticate(const std::string& token, UserInfo* user) const {
  if (token.empty()) return false;
  if (token == admin_token_) {
    *user = {"admin", {"system:masters", "system:authenticated"}};
    return true;
  }
  std::string sa = api_->ServiceAccountForToken(token);
  if (sa.empty()) return false;
  std::vector<std::string> parts = Split(sa, ':');  // system:serviceaccount:<ns>:<name>
  *user = {
      sa, {"system:serviceaccounts", "system:serviceaccounts:" + parts[2], "system:authenticated"}};
  return true;
}

std::vector<Json> Authorizer::RulesForUser(const UserInfo& user, const std::string& ns) const {
  std::vector<Json> rules;
  auto role_rules = [&](const Json& ref, const std::string& binding_ns) {
    std::string kind = ref.value("kind", "");
    ApiResult r =
        kind == "ClusterRole"
            ? api_->Get({"rbac.authorization.k8s.io", "clusterroles"}, "", ref.value("name", ""))
            : api_->Get({"rbac.authorization.k8s.io", "roles"}, binding_ns, ref.value("name", ""));
    if (!r.ok()) return;
    for (const Json& rule : r.value().value("rules", Json::array())) rules.push_back(rule);
  };
  ApiResult crbs = api_->List({"rbac.authorization.k8s.io", "clusterrolebindings"}, "");
  for (const Json& b : crbs.value().value("items", Json::array())) {
    for (const Json& s : b.value("subjects", Json::array())) {
      if (SubjectMatches(s, user)) {
        role_rules(b["roleRef"], "");
        break;
      }
    }
  }
  if (!ns.empty()) {
    ApiResult rbs = api_->List({"rbac.authorization.k8s.io", "rolebindings"}, ns);
    for (const Json& b : rbs.value().value("items", Json::array())) {
      for (const Json& s : b.value("subjects", Json::array())) {
        if (SubjectMatches(s, user)) {
          role_rules(b["roleRef"], ns);
          break;
        }
      }
    }
  }
  return rules;
}

bool Authorizer::Allowed(const UserInfo& user, const RequestAttributes& a) const {
  if (user.IsMaster()) return true;
  if (!a.resource_request) {
    static const std::vector<std::string> kPublic = {"/api",     "/apis",   "/version", "/openapi",
                                                     "/healthz", "/readyz", "/livez"};
    for (const std::string& p : kPublic) {
      if (a.path == p || a.path.rfind(p + "/", 0) == 0) return true;
    }
  }
  if (a.resource_request && a.verb == "create" &&
      ((a.group == "authorization.k8s.io" &&
        (a.resource == "selfsubjectaccessreviews" || a.resource == "selfsubjectrulesreviews")) ||
       (a.group == "authentication.k8s.io" && a.resource == "selfsubjectreviews"))) {
    return true;
  }
  for (const Json& rule : RulesForUser(user, a.ns)) {
    if (RuleAllows(rule, a)) return true;
  }
  return false;
}

std::string Authorizer::ForbiddenMessage(const UserInfo& user, const RequestAttributes& a) {
  if (!a.resource_request) {
    return "forbidden: User \"" + user.name + "\" cannot " + a.verb + " path \"" + a.path + "\"";
  }
  std::string res = a.subresource.empty() ? a.resource : a.resource + "/" + a.subresource;
  std::string qualified = a.group.empty() ? a.resource : a.resource + "." + a.group;
  std::string head = a.name.empty() ? qualified : qualified + " \"" + a.name + "\"";
  std::string scope = a.ns.empty() ? "at the cluster scope" : "in the namespace \"" + a.ns + "\"";
  return head + " is forbidden: User \"" + user.name + "\" cannot " + a.verb + " resource \"" +
         res + "\" in API group \"" + a.group + "\" " + scope;
}

Json Authorizer::RulesFor(const UserInfo& user, const std::string& ns) const {
  Json out = Json::array();
  if (user.IsMaster()) {
    out.push_back({{"verbs", {"*"}}, {"apiGroups", {"*"}}, {"resources", {"*"}}});
    return out;
  }
  out.push_back({{"verbs", {"create"}},
                 {"apiGroups", {"authorization.k8s.io"}},
                 {"resources", {"selfsubjectaccessreviews", "selfsubjectrulesreviews"}}});
  for (const Json& r : RulesForUser(user, ns)) {
    if (r.contains("resources")) out.push_back(r);
  }
  return out;
}

}  // namespace parallelrun::rt::cluster
