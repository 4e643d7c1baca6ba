// The plugins' and the app's routes as an OpenAPI 3.0 document
// (`/api/v1/openapi.json`), with JSON Schemas from the C++ types.
#include "plugins/plugin_host.hpp"

#include <boost/json.hpp>

namespace framex::detail {

namespace json = boost::json;

namespace {

// One operation of openapi.json.
json::object operation(http_method method, const route_doc& doc, bool streams, const std::string& tag) {
  json::object op;
  if (!doc.summary.empty()) op["summary"] = doc.summary;
  if (!tag.empty()) op["tags"] = json::array{json::string(tag)};
  if (method == http_method::get || method == http_method::del) {
    json::array parameters;
    if (!doc.body_schema.is_null()) {
      for (const auto& [name, schema] : doc.body_schema.at("properties").as_object()) {
        parameters.push_back({{"name", name}, {"in", "query"}, {"required", true}, {"schema", schema}});
      }
    }
    for (std::size_t i = 0; i < doc.params.size(); ++i) {
      const json::value schema = i < doc.param_schemas.size() ? doc.param_schemas[i] : json::object{};
      parameters.push_back({{"name", doc.params[i]}, {"in", "query"}, {"required", true}, {"schema", schema}});
    }
    if (!parameters.empty()) op["parameters"] = std::move(parameters);
  } else {
    json::value schema = doc.body_schema;
    if (schema.is_null()) {
      json::object properties;
      json::array required;
      for (std::size_t i = 0; i < doc.params.size(); ++i) {
        properties[doc.params[i]] = i < doc.param_schemas.size() ? doc.param_schemas[i] : json::object{};
        required.push_back(json::string(doc.params[i]));
      }
      schema = {{"type", "object"}, {"properties", std::move(properties)}};
      if (!required.empty()) schema.as_object()["required"] = std::move(required);
    }
    op["requestBody"] = {{"required", !doc.params.empty() || !doc.body_schema.is_null()},
                         {"content", {{"application/json", {{"schema", std::move(schema)}}}}}};
  }
  json::object content;
  if (streams) {
    content["text/event-stream"] = {{"schema", {{"type", "string"}}}};
    content["text/plain"] = {{"schema", {{"type", "string"}}}};
  } else {
    content["application/json"] = {{"schema", doc.result_schema.is_null() ? json::value(json::object{}) : doc.result_schema}};
  }
  json::object error_schema{{"type", "object"},
                            {"properties", {{"status", {{"type", "integer"}}}, {"message", {{"type", "string"}}}}}};
  json::object responses{{"200", {{"description", "the result"}, {"content", std::move(content)}}},
                         {"400",
                          {{"description", "a parameter is missing or has the wrong type"},
                           {"content", {{"application/json", {{"schema", error_schema}}}}}}}};
  if (!tag.empty()) responses["503"] = {{"description", "the plugin is serving its max_ongoing_requests"}};  // a plugin's only
  op["responses"] = std::move(responses);
  return op;
}

void add_path(json::object& paths, const std::string& path, const std::vector<http_method>& methods, const route_doc& doc,
              bool streams, const std::string& tag) {
  json::object& item = paths[path].emplace_object();
  for (auto m : methods) {
    std::string name = to_string(m);
    std::transform(name.begin(), name.end(), name.begin(), [](char c) { return static_cast<char>(std::tolower(c)); });
    item[name] = operation(m, doc, streams, tag);
  }
}

}  // namespace

std::string plugin_host::openapi(const std::vector<route_info>& extra) const {
  json::object paths;
  for (const auto& r : extra) add_path(paths, r.path, r.methods, r.doc, false, "");
  json::array plugins;
  for (const auto& p : plugins_) {
    if (p->dropped) continue;
    const plugin_metadata& m = p->d->metadata;
    json::array routes, functions;
    for (const auto& spec : p->d->apis) {
      route_doc doc{spec.params, spec.param_schemas, spec.body_schema, spec.result_schema, spec.summary};
      if (!spec.path.empty()) {
        if (!spec.path.ends_with("/*")) add_path(paths, spec.path, spec.methods, doc, spec.streams, m.name);
        routes.push_back(json::string(spec.path));
      }
      if (!spec.function.empty()) {
        json::object params;
        for (std::size_t i = 0; i < spec.params.size(); ++i) params[spec.params[i]] = spec.param_schemas[i];
        functions.push_back({{"name", m.name + "." + spec.function},
                             {"params", std::move(params)},
                             {"body", spec.body_schema},
                             {"result", spec.result_schema},
                             {"summary", spec.summary}});
      }
    }
    json::array required;
    for (const auto& r : m.required_apis) required.push_back(json::string(r));
    plugins.push_back({{"name", m.name},
                       {"version", m.version},
                       {"description", m.description},
                       {"author", m.author},
                       {"url", m.url},
                       {"required_apis", std::move(required)},
                       {"source", p->source},
                       {"runs_on", p->elsewhere ? "workers" : "here"},
                       {"routes", std::move(routes)},
                       {"function_apis", std::move(functions)}});
  }
  json::object doc{{"openapi", "3.0.3"},
                   {"info", {{"title", "framex service"}, {"version", "0.1.0"}}},
                   {"paths", std::move(paths)},
                   {"x-framex-plugins", std::move(plugins)}};
  return json::serialize(doc);
}

}  // namespace framex::detail
