#include "tests/cluster/selector.h"

#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace {

// Splits on commas that are not inside parentheses.
std::vector<std::string> SplitTop(const std::string& s) {
  std::vector<std::string> out;
  int depth = 0;
  std::string cur;
  for (char c : s) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == ',' && depth == 0) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  out.push_back(cur);
  return out;
}

bool ValidKey(const std::string& k) {
  if (k.empty() || k.size() > 316) return false;
  for (char c : k) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
          c == '/')) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::optional<LabelSelector> LabelSelector::Parse(const std::string& text, std::string* error) {
  LabelSelector sel;
  if (Trim(text).empty()) return sel;
  for (std::string part : SplitTop(text)) {
    part = Trim(part);
    if (part.empty()) {
      *error = "unable to parse requirement: empty requirement in \"" + text + "\"";
      return std::nullopt;
    }
    Requirement r;
    size_t pos;
    if (part[0] == '!') {
      r.key = Trim(part.substr(1));
      r.op = Requirement::kNotExists;
    } else if ((pos = part.find("!=")) != std::string::npos) {
      r.key = Trim(part.substr(0, pos));
      r.op = Requirement::kNotEquals;
      r.values.insert(Trim(part.substr(pos + 2)));
    } else if ((pos = part.find("==")) != std::string::npos) {
      r.key = Trim(part.substr(0, pos));
      r.op = Requirement::kEquals;
      r.values.insert(Trim(part.substr(pos + 2)));
    } else if ((pos = part.find('=')) != std::string::npos) {
      r.key = Trim(part.substr(0, pos));
      r.op = Requirement::kEquals;
      r.values.insert(Trim(part.substr(pos + 1)));
    } else if ((pos = part.find(" notin ")) != std::string::npos ||
               (pos = part.find(" in ")) != std::string::npos) {
      bool notin = part.compare(pos, 7, " notin ") == 0;
      r.key = Trim(part.substr(0, pos));
      r.op = notin ? Requirement::kNotIn : Requirement::kIn;
      std::string rest = Trim(part.substr(pos + (notin ? 7 : 4)));
      if (rest.size() < 2 || rest.front() != '(' || rest.back() != ')') {
        *error =
            "unable to parse requirement: expected a value list in parentheses in \"" + part + "\"";
        return std::nullopt;
      }
      for (const std::string& v : Split(rest.substr(1, rest.size() - 2), ',')) {
        r.values.insert(Trim(v));
      }
    } else {
      r.key = part;
      r.op = Requirement::kExists;
    }
    if (!ValidKey(r.key)) {
      *error = "unable to parse requirement: invalid label key \"" + r.key + "\"";
      return std::nullopt;
    }
    sel.requirements_.push_back(std::move(r));
  }
  return sel;
}

std::optional<LabelSelector> LabelSelector::FromJson(const Json& selector, std::string* error) {
  LabelSelector sel;
  if (!selector.is_object()) return sel;
  if (selector.contains("matchLabels") && selector["matchLabels"].is_object()) {
    for (const auto& [k, v] : selector["matchLabels"].items()) {
      sel.requirements_.push_back(
          {k, Requirement::kEquals, {v.is_string() ? v.get<std::string>() : v.dump()}});
    }
  }
  if (selector.contains("matchExpressions") && selector["matchExpressions"].is_array()) {
    for (const Json& e : selector["matchExpressions"]) {
      Requirement r;
      r.key = e.value("key", "");
      std::string op = e.value("operator", "");
      if (op == "In") {
        r.op = Requirement::kIn;
      } else if (op == "NotIn") {
        r.op = Requirement::kNotIn;
      } else if (op == "Exists") {
        r.op = Requirement::kExists;
      } else if (op == "DoesNotExist") {
        r.op = Requirement::kNotExists;
      } else {
        *error = "matchExpressions operator \"" + op +
                 "\" is not one of In, NotIn, Exists, DoesNotExist";
        return std::nullopt;
      }
      if (e.contains("values") && e["values"].is_array()) {
        for (const Json& v : e["values"])
          r.values.insert(v.is_string() ? v.get<std::string>() : "");
      }
      sel.requirements_.push_back(std::move(r));
    }
  }
  return sel;
}

bool LabelSelector::Matches(const Json& labels) const {
  for (const Requirement& r : requirements_) {
    bool has = labels.is_object() && labels.contains(r.key);
    std::string value = has && labels[r.key].is_string() ? labels[r.key].get<std::string>() : "";
    switch (r.op) {
      case Requirement::kEquals:
      case Requirement::kIn:
        if (!has || r.values.count(value) == 0) return false;
        break;
      case Requirement::kNotEquals:
      case Requirement::kNotIn:
        if (has && r.values.count(value) != 0) return false;
        break;
      case Requirement::kExists:
        if (!has) return false;
        break;
      case Requirement::kNotExists:
        if (has) return false;
        break;
    }
  }
  return true;
}

std::optional<FieldSelector> FieldSelector::Parse(const std::string& text, std::string* error) {
  FieldSelector sel;
  if (Trim(text).empty()) return sel;
  for (std::string part : Split(text, ',')) {
    part = Trim(part);
    Term t;
    size_t pos;
    if ((pos = part.find("!=")) != std::string::npos) {
      t.field = part.substr(0, pos);
      t.negate = true;
      t.value = part.substr(pos + 2);
    } else if ((pos = part.find("==")) != std::string::npos) {
      t.field = part.substr(0, pos);
      t.value = part.substr(pos + 2);
    } else if ((pos = part.find('=')) != std::string::npos) {
      t.field = part.substr(0, pos);
      t.value = part.substr(pos + 1);
    } else {
      *error = "invalid selector: '" + text + "'; can't understand '" + part + "'";
      return std::nullopt;
    }
    t.field = Trim(t.field);
    t.value = Trim(t.value);
    sel.terms_.push_back(std::move(t));
  }
  return sel;
}

std::vector<std::string> FieldSelector::Fields() const {
  std::vector<std::string> out;
  for (const Term& t : terms_) out.push_back(t.field);
  return out;
}

std::string FieldSelector::FieldValue(const Json& object, const std::string& field) {
  const Json* v = JsonPathGet(object, "." + field);
  if (v == nullptr || v->is_null()) {
    // The real server reports unset booleans as "false" (e.g. spec.unschedulable).
    return field == "spec.unschedulable" ? "false" : "";
  }
  if (v->is_string()) return v->get<std::string>();
  if (v->is_boolean()) return v->get<bool>() ? "true" : "false";
  return v->dump();
}

bool FieldSelector::Matches(const Json& object) const {
  for (const Term& t : terms_) {
    bool eq = FieldValue(object, t.field) == t.value;
    if (eq == t.negate) return false;
  }
  return true;
}

}  // namespace parallelrun::rt::cluster
