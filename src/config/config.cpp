#include "framex/config.hpp"

#include "config/keys.hpp"

#include "net/address.hpp"
#include "core/resources.hpp"
#include "membership/discovery.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>

extern char** environ;  // NOLINT: POSIX

namespace framex {
namespace {

using detail::find_key;
using detail::is_section;
using detail::join;
using detail::key_info;
using detail::kind;
using detail::to_size;


std::string quoted_json(std::string_view text) {
  std::string out(1, '"');
  for (const char ch : text) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned char>(ch));
      out.append(escaped);
      continue;
    }
    out += ch;
  }
  out += '"';
  return out;
}

// TOML as JSON text, for a plugin's own keys.
std::string json_text(const toml::node& node) {
  if (const auto* table = node.as_table()) {
    std::string out(1, '{');
    for (const auto& [k, v] : *table) {
      if (out.size() > 1) out += ',';
      out.append(quoted_json(k.str())).append(1, ':').append(json_text(v));
    }
    out += '}';
    return out;
  }
  if (const auto* array = node.as_array()) {
    std::string out(1, '[');
    for (const auto& v : *array) {
      if (out.size() > 1) out += ',';
      out.append(json_text(v));
    }
    out += ']';
    return out;
  }
  if (node.is_string()) return quoted_json(*node.value<std::string>());
  if (node.is_boolean()) return *node.value<bool>() ? "true" : "false";
  if (node.is_integer()) return std::to_string(*node.value<std::int64_t>());
  std::ostringstream o;  // floating point, and dates and times as text
  o.precision(17);
  node.visit([&o](const auto& n) { o << n; });
  return node.is_floating_point() ? o.str() : quoted_json(o.str());
}

// Whether `text` is one JSON value (a plugin key given as text is taken as
// JSON when it is one, else as a string): a cheap check of its shape, the
// plugin's own conversion being the judge of the rest.
bool looks_like_json(std::string_view text) {
  if (text.empty()) return false;
  if (text == "true" || text == "false" || text == "null") return true;
  const char f = text.front(), b = text.back();
  if ((f == '{' && b == '}') || (f == '[' && b == ']') || (f == '"' && b == '"' && text.size() > 1)) return true;
  double ignored = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ignored);
  return ec == std::errc{} && end == text.data() + text.size();
}


std::string toml_text(const toml::node& node, kind type, const std::string& where) {
  auto wrong = [&](const char* expected) {
    return config_error(where + ": expected " + expected + ", got a TOML " +
                        std::string(toml::impl::node_type_friendly_names[static_cast<int>(node.type())]));
  };
  switch (type) {
    case kind::text:
      if (auto s = node.value<std::string>(); s && node.is_string()) return *s;
      throw wrong("a string");
    case kind::integer:
      if (node.is_integer()) {
        const auto v = *node.value<std::int64_t>();
        if (v < 0) throw config_error(where + ": expected a non-negative integer");
        return std::to_string(v);
      }
      throw wrong("an integer");
    case kind::boolean:
      if (node.is_boolean()) return *node.value<bool>() ? "true" : "false";
      throw wrong("a boolean");
    case kind::rules: {
      const auto* table = node.as_table();
      if (table == nullptr) throw wrong("a table of path = [keys]");
      std::string text;
      for (const auto& [path, keys] : *table) {
        if (!text.empty()) text += ';';
        text += path.str();
        text += '=';
        const auto* array = keys.as_array();
        if (array == nullptr) throw config_error(where + ": " + std::string(path.str()) + ": expected an array of keys");
        bool first = true;
        for (const auto& k : *array) {
          if (!k.is_string()) throw config_error(where + ": " + std::string(path.str()) + ": expected an array of keys");
          if (!first) text += '|';
          text += *k.value<std::string>();
          first = false;
        }
      }
      return text;
    }
    case kind::amounts: {
      const auto* table = node.as_table();
      if (table == nullptr) throw wrong("a table of name = amount");
      std::string text;
      for (const auto& [name, amount] : *table) {
        if (!amount.is_number()) throw config_error(where + ": " + std::string(name.str()) + ": expected a number");
        if (!text.empty()) text += ',';
        text += std::string(name.str()) + '=' + detail::amount_text(*amount.value<double>());
      }
      return text;
    }
    case kind::list: {
      const auto* array = node.as_array();
      if (array == nullptr) throw wrong("an array of strings");
      std::vector<std::string> items;
      for (const auto& item : *array) {
        if (!item.is_string()) throw wrong("an array of strings");
        items.push_back(*item.value<std::string>());
      }
      return join(items);
    }
  }
  return {};
}

// "plugins.NAME.KEY": a plugin's setting (framex's own `deploy` and
// `max_ongoing_requests`, else the plugin's key, as JSON text).
void apply_plugin_key(config& c, std::string_view name, std::string_view key, std::string json, const std::string& origin) {
  const std::string where = origin + ": plugins." + std::string(name) + "." + std::string(key);
  if (name.empty() || key.empty()) throw config_error(where + ": expected plugins.NAME.KEY");
  auto& settings = c.plugins.each[std::string(name)];
  const bool is_text = json.size() >= 2 && json.front() == '"';
  if (key == "deploy") {
    if (json == "\"workers\"") {
      settings.on_workers = true;
    } else if (json == "\"local\"") {
      settings.on_workers = false;
    } else {
      throw config_error(where + " = " + json + ": expected \"workers\" or \"local\"");
    }
  } else if (key == "max_ongoing_requests") {
    try {
      settings.max_ongoing_requests = to_size(is_text ? std::string_view(json).substr(1, json.size() - 2) : json);
    } catch (const std::invalid_argument& e) {
      throw config_error(where + " = " + json + ": " + e.what());
    }
  } else {
    settings.keys[std::string(key)] = std::move(json);
  }
  c.sources["plugins." + std::string(name) + "." + std::string(key)] = origin;
}

}  // namespace

std::pair<std::string, std::uint16_t> parse_endpoint(std::string_view text) {
  try {
    return net::parse_endpoint(text);
  } catch (const std::invalid_argument& e) {
    throw config_error(e.what());
  }
}

void config::apply(std::string_view key, std::string_view value, const std::string& origin) {
  if (key.starts_with("plugins.") && key.find('.', 8) != std::string_view::npos) {
    const std::string_view rest = key.substr(8);
    const std::size_t dot = rest.find('.');
    apply_plugin_key(*this, rest.substr(0, dot), rest.substr(dot + 1),
                     looks_like_json(value) ? std::string(value) : quoted_json(value), origin);
    return;
  }
  const key_info* k = find_key(key);
  if (k == nullptr) throw config_error(origin + ": unknown key \"" + std::string(key) + "\"");
  try {
    k->set(*this, value);
  } catch (const std::invalid_argument& e) {
    throw config_error(origin + ": " + std::string(key) + " = \"" + std::string(value) + "\": " + e.what());
  }
  sources[k->name] = origin;
}

void config::apply_toml(std::string_view text, const std::string& origin) {
  toml::table table;
  try {
    table = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    std::ostringstream s;
    s << origin << ": not valid TOML: " << e.description() << " (line " << e.source().begin.line << ")";
    throw config_error(s.str());
  }
  for (const auto& [section, node] : table) {
    const auto* inner = node.as_table();
    if (inner == nullptr) {  // a top-level key (load_plugins, ...)
      const std::string key(section.str());
      const key_info* k = find_key(key);
      if (k == nullptr || key.find('.') != std::string::npos) throw config_error(origin + ": unknown key \"" + key + "\"");
      apply(key, toml_text(node, k->type, origin + ": " + key), origin);
      continue;
    }
    for (const auto& [name, value] : *inner) {
      const std::string key = std::string(section.str()) + "." + std::string(name.str());
      if (section.str() == "plugins" && value.is_table()) {  // [plugins.NAME]
        for (const auto& [plugin_key, plugin_value] : *value.as_table()) {
          apply_plugin_key(*this, name.str(), plugin_key.str(), json_text(plugin_value), origin);
        }
        continue;
      }
      const key_info* k = find_key(key);
      if (k == nullptr) throw config_error(origin + ": unknown key \"" + key + "\"");
      apply(key, toml_text(value, k->type, origin + ": " + key), origin);
    }
  }
}

void config::apply_environment() {
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry = *e;
    if (!entry.starts_with("FRAMEX_")) continue;
    const std::size_t eq = entry.find('=');
    const std::string_view name = entry.substr(0, eq);
    if (name == "FRAMEX_CONFIG") continue;
    // FRAMEX_SECTION__KEY, FRAMEX_PLUGINS__NAME__KEY, or a top-level key.
    std::string key;
    for (std::size_t i = 7; i < name.size(); ++i) {
      if (name.substr(i, 2) == "__") {
        key += '.';
        ++i;
      } else {
        key += static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
      }
    }
    if (key.find('.') == std::string::npos && find_key(key) == nullptr) continue;  // not ours
    const std::string origin = "environment " + std::string(name);
    apply(key, eq == std::string_view::npos ? std::string_view{} : entry.substr(eq + 1), origin);
  }
}

config config::load(std::optional<std::filesystem::path> file) {
  config c;
  if (!file) {
    if (const char* from_env = std::getenv("FRAMEX_CONFIG")) {
      file = from_env;
    } else if (std::filesystem::exists("framex.toml")) {
      file = "framex.toml";
    }
  }
  if (file) {
    std::ifstream in(*file);
    if (!in) throw config_error("file " + file->string() + ": cannot be read");
    std::ostringstream text;
    text << in.rdbuf();
    c.apply_toml(text.str(), "file " + file->string());
  }
  c.apply_environment();
  return c;
}

namespace detail {

config load_command_line(int argc, const char* const* argv, bool worker) {
  // A worker's command line is all framex's, and has two short forms.
  constexpr std::pair<std::string_view, std::string_view> worker_aliases[] = {{"listen", "worker.listen"}, {"threads", "worker.threads"}};
  std::optional<std::filesystem::path> file;
  std::vector<std::pair<std::string, std::string>> flags;
  bool print = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--framex-worker") continue;
    if (!a.starts_with("--")) {
      if (worker) throw config_error("command line: unknown worker argument " + std::string(a));
      continue;
    }
    std::string_view name = a.substr(2), value;
    const std::size_t eq = name.find('=');
    const bool inline_value = eq != std::string_view::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (name == "print-config") {
      print = true;
      continue;
    }
    if (worker) {
      for (const auto& [alias, key] : worker_aliases) {
        if (name == alias) name = key;
      }
    }
    // Ours: --config and --section.key, where section is one of framex's, and --key for a top-level key.
    const std::size_t dot = name.find('.');
    const bool top_level = dot == std::string_view::npos && find_key(name) != nullptr;
    if (name != "config" && !top_level && (dot == std::string_view::npos || !is_section(name.substr(0, dot)))) {
      if (worker) throw config_error("command line: unknown worker flag " + std::string(a));
      continue;  // the program's own flag
    }
    if (!inline_value) {
      if (i + 1 == argc) throw config_error("command line: --" + std::string(name) + " needs a value");
      value = argv[++i];
    }
    if (name == "config") {
      file = std::string(value);
    } else {
      flags.emplace_back(std::string(name), std::string(value));
    }
  }
  config c = config::load(file);
  for (const auto& [key, value] : flags) c.apply(key, value, "command line --" + key);
  c.print_only = print;
  return c;
}

}  // namespace detail

config config::load(int argc, const char* const* argv) { return detail::load_command_line(argc, argv, false); }

namespace {

// A plugin's key is judged by its name, since --print-config runs no plugin
// code to ask: one that names a key, token, secret, password or credential
// shows where it points (file:, env:) or nothing.
std::string shown_plugin_value(const std::string& key, const std::string& json) {
  std::string lower(key);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  static constexpr std::string_view secret_words[] = {"key", "token", "secret", "password", "passwd", "credential"};
  const bool secret = std::any_of(std::begin(secret_words), std::end(secret_words),
                                  [&](std::string_view w) { return lower.find(w) != std::string::npos; });
  if (!secret) return json;
  if (json.starts_with("\"file:") || json.starts_with("\"env:")) return json;
  return "(secret)";
}

}  // namespace

std::string config::describe() const {
  std::string out;
  for (const auto& k : detail::config_keys()) {
    const auto source = sources.find(k.name);
    out += std::string(k.name) + " = " + k.get(*this) + "  # " +
           (source == sources.end() ? std::string("default") : source->second) + "\n";
  }
  for (const auto& entry : plugins.each) {
    const auto& settings = entry.second;
    std::vector<std::pair<std::string, std::string>> lines{{"deploy", settings.on_workers ? "workers" : "local"}};
    if (settings.max_ongoing_requests) lines.emplace_back("max_ongoing_requests", std::to_string(*settings.max_ongoing_requests));
    lines.insert(lines.end(), settings.keys.begin(), settings.keys.end());
    for (const auto& [key, value] : lines) {
      const std::string name = "plugins." + entry.first + "." + key;
      const auto source = sources.find(name);
      out += name + " = " + shown_plugin_value(key, value) + "  # " + (source == sources.end() ? std::string("default") : source->second) + "\n";
    }
  }
  return out;
}

}  // namespace framex
