#include "tests/cluster/protobuf.h"

#include <map>
#include <vector>

#include "tests/cluster/util.h"

namespace parallelrun::rt::cluster {
namespace {

enum class Kind { kString, kInt, kBool, kBytes, kMessage, kStringMap, kBytesMap, kTime };

struct Schema;
struct Field {
  std::string name;
  Kind kind;
  bool repeated = false;
  const Schema* message = nullptr;
};
struct Schema {
  std::map<int, Field> fields;
};

// Reads protobuf wire data.
class Reader {
 public:
  explicit Reader(const std::string& data) : data_(data) {}
  bool done() const { return pos_ >= data_.size(); }
  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) return false;
      uint8_t b = static_cast<uint8_t>(data_[pos_++]);
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  bool Bytes(std::string* out) {
    uint64_t len;
    if (!Varint(&len) || pos_ + len > data_.size()) return false;
    *out = data_.substr(pos_, len);
    pos_ += len;
    return true;
  }
  bool Skip(int wire) {
    uint64_t v;
    std::string s;
    switch (wire) {
      case 0:
        return Varint(&v);
      case 1:
        pos_ += 8;
        return pos_ <= data_.size();
      case 2:
        return Bytes(&s);
      case 5:
        pos_ += 4;
        return pos_ <= data_.size();
      default:
        return false;
    }
  }

 private:
  const std::string& data_;
  size_t pos_ = 0;
};

bool Decode(const std::string& data, const Schema& schema, Json* out);

bool DecodeMapEntry(const std::string& data, bool bytes_value, std::string* key, Json* value) {
  Reader r(data);
  *value = bytes_value ? Json("") : Json("");
  while (!r.done()) {
    uint64_t tag;
    if (!r.Varint(&tag)) return false;
    int num = static_cast<int>(tag >> 3), wire = static_cast<int>(tag & 7);
    if (wire != 2) {
      if (!r.Skip(wire)) return false;
      continue;
    }
    std::string s;
    if (!r.Bytes(&s)) return false;
    if (num == 1) *key = s;
    if (num == 2) *value = bytes_value ? Json(Base64Encode(s)) : Json(s);
  }
  return true;
}

bool Decode(const std::string& data, const Schema& schema, Json* out) {
  *out = Json::object();
  Reader r(data);
  while (!r.done()) {
    uint64_t tag;
    if (!r.Varint(&tag)) return false;
    int num = static_cast<int>(tag >> 3), wire = static_cast<int>(tag & 7);
    auto it = schema.fields.find(num);
    if (it == schema.fields.end()) {
      if (!r.Skip(wire)) return false;
      continue;
    }
    const Field& f = it->second;
    Json value;
    if (wire == 0) {
      uint64_t v;
      if (!r.Varint(&v)) return false;
      value = f.kind == Kind::kBool ? Json(v != 0) : Json(static_cast<int64_t>(v));
    } else if (wire == 2) {
      std::string s;
      if (!r.Bytes(&s)) return false;
      switch (f.kind) {
        case Kind::kString:
          value = s;
          break;
        case Kind::kBytes:
          value = Base64Encode(s);
          break;
        case Kind::kMessage:
          if (!Decode(s, *f.message, &value)) return false;
          break;
        case Kind::kTime: {
          Json t;
          static const Schema kTimeSchema{
              {{1, {"seconds", Kind::kInt}}, {2, {"nanos", Kind::kInt}}}};
          if (!Decode(s, kTimeSchema, &t)) return false;
          value = FormatRfc3339(std::chrono::system_clock::from_time_t(t.value("seconds", 0)));
          break;
        }
        case Kind::kStringMap:
        case Kind::kBytesMap: {
          std::string key;
          Json v;
          if (!DecodeMapEntry(s, f.kind == Kind::kBytesMap, &key, &v)) return false;
          (*out)[f.name][key] = v;
          continue;
        }
        default:
          return false;
      }
    } else {
      if (!r.Skip(wire)) return false;
      continue;
    }
    if (f.repeated) {
      (*out)[f.name].push_back(value);
    } else {
      (*out)[f.name] = value;
    }
  }
  return true;
}

const Schema& OwnerRefSchema() {
  static const Schema s{{{1, {"kind", Kind::kString}},
                         {3, {"name", Kind::kString}},
                         {4, {"uid", Kind::kString}},
                         {5, {"apiVersion", Kind::kString}},
                         {6, {"controller", Kind::kBool}},
                         {7, {"blockOwnerDeletion", Kind::kBool}}}};
  return s;
}

const Schema& ObjectMetaSchema() {
  static const Schema s{{{1, {"name", Kind::kString}},
                         {2, {"generateName", Kind::kString}},
                         {3, {"namespace", Kind::kString}},
                         {5, {"uid", Kind::kString}},
                         {6, {"resourceVersion", Kind::kString}},
                         {7, {"generation", Kind::kInt}},
                         {11, {"labels", Kind::kStringMap}},
                         {12, {"annotations", Kind::kStringMap}},
                         {13, {"ownerReferences", Kind::kMessage, true, &OwnerRefSchema()}},
                         {14, {"finalizers", Kind::kString, true}}}};
  return s;
}

const Schema& PolicyRuleSchema() {
  static const Schema s{{{1, {"verbs", Kind::kString, true}},
                         {2, {"apiGroups", Kind::kString, true}},
                         {3, {"resources", Kind::kString, true}},
                         {4, {"resourceNames", Kind::kString, true}},
                         {5, {"nonResourceURLs", Kind::kString, true}}}};
  return s;
}

const Schema& SubjectSchema() {
  static const Schema s{{{1, {"kind", Kind::kString}},
                         {2, {"apiGroup", Kind::kString}},
                         {3, {"name", Kind::kString}},
                         {4, {"namespace", Kind::kString}}}};
  return s;
}

const Schema& RoleRefSchema() {
  static const Schema s{{{1, {"apiGroup", Kind::kString}},
                         {2, {"kind", Kind::kString}},
                         {3, {"name", Kind::kString}}}};
  return s;
}

const Schema& LabelSelectorSchema() {
  static const Schema s{{{1, {"matchLabels", Kind::kStringMap}}}};
  return s;
}

const Schema& AggregationRuleSchema() {
  static const Schema s{
      {{1, {"clusterRoleSelectors", Kind::kMessage, true, &LabelSelectorSchema()}}}};
  return s;
}

const Schema& ResourceAttributesSchema() {
  static const Schema s{{{1, {"namespace", Kind::kString}},
                         {2, {"verb", Kind::kString}},
                         {3, {"group", Kind::kString}},
                         {4, {"version", Kind::kString}},
                         {5, {"resource", Kind::kString}},
                         {6, {"subresource", Kind::kString}},
                         {7, {"name", Kind::kString}}}};
  return s;
}

const Schema& NonResourceAttributesSchema() {
  static const Schema s{{{1, {"path", Kind::kString}}, {2, {"verb", Kind::kString}}}};
  return s;
}

const Schema& SsarSpecSchema() {
  static const Schema s{
      {{1, {"resourceAttributes", Kind::kMessage, false, &ResourceAttributesSchema()}},
       {2, {"nonResourceAttributes", Kind::kMessage, false, &NonResourceAttributesSchema()}}}};
  return s;
}

const Schema& BoundObjectRefSchema() {
  static const Schema s{{{1, {"kind", Kind::kString}},
                         {2, {"apiVersion", Kind::kString}},
                         {3, {"name", Kind::kString}},
                         {4, {"uid", Kind::kString}}}};
  return s;
}

const Schema& TokenRequestSpecSchema() {
  static const Schema s{{{1, {"audiences", Kind::kString, true}},
                         {4, {"expirationSeconds", Kind::kInt}},
                         {3, {"boundObjectRef", Kind::kMessage, false, &BoundObjectRefSchema()}}}};
  return s;
}

const Schema& PreconditionsSchema() {
  static const Schema s{{{1, {"uid", Kind::kString}}, {2, {"resourceVersion", Kind::kString}}}};
  return s;
}

// metav1.DeleteOptions: the body of a typed client's DELETE (Helm's release Secrets).
const Schema& DeleteOptionsSchema() {
  static const Schema s{{{1, {"gracePeriodSeconds", Kind::kInt}},
                         {2, {"preconditions", Kind::kMessage, false, &PreconditionsSchema()}},
                         {3, {"orphanDependents", Kind::kBool}},
                         {4, {"propagationPolicy", Kind::kString}},
                         {5, {"dryRun", Kind::kString, true}}}};
  return s;
}

const Schema* SchemaFor(const std::string& api_version, const std::string& kind) {
  static const Field kMeta{"metadata", Kind::kMessage, false, &ObjectMetaSchema()};
  static const std::map<std::string, Schema> kSchemas = {
      {"v1/Namespace", Schema{{{1, kMeta}}}},
      {"v1/ServiceAccount",
       Schema{{{1, kMeta}, {4, {"automountServiceAccountToken", Kind::kBool}}}}},
      {"v1/ConfigMap", Schema{{{1, kMeta},
                               {2, {"data", Kind::kStringMap}},
                               {3, {"binaryData", Kind::kBytesMap}},
                               {4, {"immutable", Kind::kBool}}}}},
      {"v1/Secret", Schema{{{1, kMeta},
                            {2, {"data", Kind::kBytesMap}},
                            {3, {"type", Kind::kString}},
                            {4, {"stringData", Kind::kStringMap}},
                            {5, {"immutable", Kind::kBool}}}}},
      {"rbac.authorization.k8s.io/v1/Role",
       Schema{{{1, kMeta}, {2, {"rules", Kind::kMessage, true, &PolicyRuleSchema()}}}}},
      {"rbac.authorization.k8s.io/v1/ClusterRole",
       Schema{{{1, kMeta},
               {2, {"rules", Kind::kMessage, true, &PolicyRuleSchema()}},
               {3, {"aggregationRule", Kind::kMessage, false, &AggregationRuleSchema()}}}}},
      {"rbac.authorization.k8s.io/v1/RoleBinding",
       Schema{{{1, kMeta},
               {2, {"subjects", Kind::kMessage, true, &SubjectSchema()}},
               {3, {"roleRef", Kind::kMessage, false, &RoleRefSchema()}}}}},
      {"rbac.authorization.k8s.io/v1/ClusterRoleBinding",
       Schema{{{1, kMeta},
               {2, {"subjects", Kind::kMessage, true, &SubjectSchema()}},
               {3, {"roleRef", Kind::kMessage, false, &RoleRefSchema()}}}}},
      {"authorization.k8s.io/v1/SelfSubjectAccessReview",
       Schema{{{1, kMeta}, {2, {"spec", Kind::kMessage, false, &SsarSpecSchema()}}}}},
      {"v1/DeleteOptions", DeleteOptionsSchema()},
      {"meta.k8s.io/v1/DeleteOptions", DeleteOptionsSchema()},
      {"authentication.k8s.io/v1/TokenRequest",
       Schema{{{1, kMeta}, {2, {"spec", Kind::kMessage, false, &TokenRequestSpecSchema()}}}}},
  };
  auto it = kSchemas.find(api_version + "/" + kind);
  return it == kSchemas.end() ? nullptr : &it->second;
}

}  // namespace

std::optional<Json> DecodeKubernetesProtobuf(const std::string& bytes, std::string* error) {
  static const std::string kMagic("k8s\0", 4);
  if (bytes.compare(0, 4, kMagic) != 0) {
    *error = "the protobuf body does not start with the k8s magic number";
    return std::nullopt;
  }
  static const Schema kTypeMeta{{{1, {"apiVersion", Kind::kString}}, {2, {"kind", Kind::kString}}}};
  static const Schema kUnknown{
      {{1, {"typeMeta", Kind::kMessage, false, &kTypeMeta}}, {2, {"raw", Kind::kBytes}}}};
  Json envelope;
  if (!Decode(bytes.substr(4), kUnknown, &envelope)) {
    *error = "the protobuf envelope (runtime.Unknown) is malformed";
    return std::nullopt;
  }
  std::string api_version = envelope.value("typeMeta", Json::object()).value("apiVersion", "");
  std::string kind = envelope.value("typeMeta", Json::object()).value("kind", "");
  const Schema* schema = SchemaFor(api_version, kind);
  if (schema == nullptr) {
    *error = "protobuf bodies of " + api_version + " " + kind +
             " are not supported by the test cluster; send JSON (kubectl apply -f)";
    return std::nullopt;
  }
  auto raw = Base64Decode(envelope.value("raw", ""));
  Json object;
  if (!raw || !Decode(*raw, *schema, &object)) {
    *error = "the protobuf body of " + kind + " is malformed";
    return std::nullopt;
  }
  object["apiVersion"] = api_version;
  object["kind"] = kind;
  return object;
}

}  // namespace parallelrun::rt::cluster
