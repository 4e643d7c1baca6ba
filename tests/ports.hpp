// Ports for processes the tests start on a port chosen in advance (etcd, and a
// worker restarted on the port it had). They are picked below the kernel's
// ephemeral range, where no `listen` on port 0 and no outgoing connection of a
// test running beside this one can take the port between the check and the
// process binding it.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <random>
#include <stdexcept>

namespace framex::test {

/// A port of 127.0.0.1, free when asked, outside the ephemeral range.
inline std::uint16_t free_port() {
  int ephemeral_low = 32768;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral_low;
  const int low = 10000, high = ephemeral_low > low + 1000 ? ephemeral_low - 1 : 30000;
  std::mt19937 pick(std::random_device{}());
  std::uniform_int_distribution<int> among(low, high);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const auto port = static_cast<std::uint16_t>(among(pick));
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) break;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    const bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (free) return port;
  }
  throw std::runtime_error("no free port of 127.0.0.1 below the ephemeral range");
}

}  // namespace framex::test
