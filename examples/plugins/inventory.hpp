// The inventory plugin's class: linked into the app (inventory.cpp registers
// it), and named by the billing plugin for typed calls.
#pragma once

#include <framex/plugin.hpp>

#include <boost/describe.hpp>

#include <map>
#include <mutex>
#include <string>

namespace inventory {

struct settings {
  /// What the store starts with.
  std::map<std::string, int> stock;
};
BOOST_DESCRIBE_STRUCT(settings, (), (stock))

struct item {
  std::string name;
  int count = 0;
};
BOOST_DESCRIBE_STRUCT(item, (), (name, count))

class plugin {
 public:
  using config_type = settings;
  explicit plugin(settings s);

  /// GET /api/v1/inventory/count?name=apple, and inventory.count.
  int count(std::string name);
  /// POST /api/v1/inventory/add {"name": "apple", "count": 3}.
  item add(item i);
  /// GET /api/v1/inventory/watch?times=3: the stock, as Server-Sent Events.
  framex::stream watch(int times);

 private:
  std::mutex mutex_;
  std::map<std::string, int> stock_;
};

}  // namespace inventory
