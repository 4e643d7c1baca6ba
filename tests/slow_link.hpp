// A network link between callers and a worker on 127.0.0.1, as a slow or
// broken network would be: a real TCP relay, on a thread of its own, that
// carries what callers send at a set rate (the worker's answers at full speed)
// and that can be cut, after which it carries nothing either way while every
// connection stays open, as across a partition. It stops with its owner.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace framex::test {

class slow_link {
 public:
  /// Relays to 127.0.0.1:`to_port`, at most `bytes_per_second` toward it.
  slow_link(std::uint16_t to_port, double bytes_per_second) : to_port_(to_port), rate_(bytes_per_second) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in a = loopback(0);
    socklen_t len = sizeof a;
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listener_, 64) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      if (listener_ >= 0) ::close(listener_);
      throw std::runtime_error("the slow link cannot listen on 127.0.0.1");
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { relay(); });
  }
  ~slow_link() {
    stop_ = true;
    thread_.join();
    for (auto& p : pairs_) p.close();
    ::close(listener_);
  }
  slow_link(const slow_link&) = delete;
  slow_link& operator=(const slow_link&) = delete;

  [[nodiscard]] std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  /// From now on nothing crosses, either way; the connections stay open.
  void cut() { cut_ = true; }
  [[nodiscard]] bool was_cut() const { return cut_; }

 private:
  struct pair {
    int caller = -1, worker = -1;
    std::string up, down;  // read from one side, not yet written to the other
    bool done = false;
    void close() {
      if (caller >= 0) ::close(caller);
      if (worker >= 0) ::close(worker);
      caller = worker = -1;
    }
  };

  static sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
  }

  // Moves what `from` has (up to `room` bytes) into `buffer`; false at its end.
  static bool take(int from, std::string& buffer, std::size_t room) {
    if (room == 0) return true;
    char chunk[65536];
    const ssize_t n = ::recv(from, chunk, std::min(room, sizeof chunk), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return false;
    if (n > 0) buffer.append(chunk, static_cast<std::size_t>(n));
    return true;
  }
  // Writes up to `most` bytes of `buffer` to `to`; false when it fails.
  static bool give(int to, std::string& buffer, std::size_t most) {
    if (buffer.empty() || most == 0) return true;
    const ssize_t n = ::send(to, buffer.data(), std::min(most, buffer.size()), MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    buffer.erase(0, static_cast<std::size_t>(n));
    return true;
  }

  void accept_one() {
    const int caller = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK);
    if (caller < 0) return;
    const int worker = ::socket(AF_INET, SOCK_STREAM, 0);
    const sockaddr_in to = loopback(to_port_);
    if (worker < 0 || ::connect(worker, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
      ::close(caller);
      if (worker >= 0) ::close(worker);
      return;
    }
    ::fcntl(worker, F_SETFL, ::fcntl(worker, F_GETFL) | O_NONBLOCK);
    pairs_.push_back({caller, worker, {}, {}, false});
  }

  void relay() {
    constexpr std::size_t buffered = 64 * 1024;  // per direction: the sender feels the rate
    auto last = std::chrono::steady_clock::now();
    double allowance = 0;
    while (!stop_) {
      std::vector<pollfd> fds{{listener_, POLLIN, 0}};
      for (const auto& p : pairs_) {
        fds.push_back({p.caller, static_cast<short>(POLLIN | (p.down.empty() ? 0 : POLLOUT)), 0});
        fds.push_back({p.worker, static_cast<short>(POLLIN | (p.up.empty() ? 0 : POLLOUT)), 0});
      }
      ::poll(fds.data(), fds.size(), 5);
      if ((fds[0].revents & POLLIN) != 0) accept_one();
      const auto now = std::chrono::steady_clock::now();
      allowance = std::min(rate_ / 20, allowance + rate_ * std::chrono::duration<double>(now - last).count());
      last = now;
      if (cut_) continue;
      for (auto& p : pairs_) {
        const auto up_room = buffered - std::min(buffered, p.up.size());
        const auto down_room = buffered - std::min(buffered, p.down.size());
        bool ok = take(p.caller, p.up, up_room) && take(p.worker, p.down, down_room);
        const std::size_t waiting = p.up.size();
        ok = ok && give(p.worker, p.up, static_cast<std::size_t>(std::max(0.0, allowance))) &&
             give(p.caller, p.down, p.down.size());
        allowance -= static_cast<double>(waiting - p.up.size());
        if (!ok) p.done = true;
      }
      for (auto& p : pairs_) {
        if (p.done) p.close();
      }
      std::erase_if(pairs_, [](const pair& p) { return p.done; });
    }
  }

  std::uint16_t to_port_;
  double rate_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::vector<pair> pairs_;  // the relay thread's
  std::atomic<bool> stop_{false}, cut_{false};
  std::thread thread_;
};

}  // namespace framex::test
