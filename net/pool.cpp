#include "framex/detail/pool.hpp"

#include <array>
#include <bit>
#include <cstdlib>
#include <mutex>

// Under AddressSanitizer blocks come from the heap, so it still finds
// use-after-free and leaks; ThreadSanitizer checks the pool itself.
#if defined(__SANITIZE_ADDRESS__)
#define FRAMEX_POOL_BYPASS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define FRAMEX_POOL_BYPASS 1
#endif
#endif

namespace framex::detail {

namespace {

constexpr std::size_t smallest = 64;  // class 0; class k holds blocks of 64 << k bytes

constexpr std::size_t class_of(std::size_t n) noexcept {
  return n <= smallest ? 0 : static_cast<std::size_t>(std::bit_width((n - 1) / smallest));
}
constexpr std::size_t size_of(std::size_t k) noexcept { return smallest << k; }

}  // namespace

std::size_t pool_block_size(std::size_t n) noexcept { return n <= pooled_max ? size_of(class_of(n)) : n; }

#ifdef FRAMEX_POOL_BYPASS

void* pool_allocate(std::size_t n) { return ::operator new(n); }
void pool_free(void* p, std::size_t) noexcept { ::operator delete(p); }

#else

namespace {

constexpr std::size_t classes = std::bit_width(pooled_max / smallest);
constexpr std::size_t cached_blocks = 64;  // per thread and class
constexpr std::size_t batch = cached_blocks / 2;
constexpr std::size_t reserve_blocks = 1024;  // shared, per class

// A free block holds the link to the next.
struct free_block {
  free_block* next;
};

struct stack {
  free_block* head = nullptr;
  std::size_t count = 0;
  void push(void* p) noexcept {
    auto* b = static_cast<free_block*>(p);
    b->next = head;
    head = b;
    ++count;
  }
  void* pop() noexcept {
    free_block* b = head;
    head = b->next;
    --count;
    return b;
  }
};

struct reserve {
  std::mutex mutex;
  std::array<stack, classes> free;
};

reserve& shared() {
  static reserve* r = new reserve;  // never destroyed: threads may free blocks during static destruction
  return *r;
}

// Set once this thread's cache is destroyed: blocks freed later (by other
// thread-local destructors) go to the reserve directly.
thread_local bool cache_gone = false;

struct thread_cache {
  std::array<stack, classes> free;
  ~thread_cache() {
    cache_gone = true;
    for (std::size_t k = 0; k < classes; ++k) {
      while (free[k].count != 0) give_back(k, free[k].pop());
    }
  }
  static void give_back(std::size_t k, void* p) noexcept {
    {
      reserve& r = shared();
      std::lock_guard lock(r.mutex);
      if (r.free[k].count < reserve_blocks) return r.free[k].push(p);
    }
    std::free(p);
  }
};

thread_cache& cache() {
  thread_local thread_cache c;
  return c;
}

}  // namespace

void* pool_allocate(std::size_t n) {
  if (n > pooled_max) return ::operator new(n);
  const std::size_t k = class_of(n);
  if (cache_gone) {
    void* p = std::malloc(size_of(k));
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  stack& mine = cache().free[k];
  if (mine.count == 0) {
    reserve& r = shared();
    std::lock_guard lock(r.mutex);
    for (std::size_t i = 0; i < batch && r.free[k].count != 0; ++i) mine.push(r.free[k].pop());
  }
  if (mine.count != 0) return mine.pop();
  void* p = std::malloc(size_of(k));
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void pool_free(void* p, std::size_t n) noexcept {
  if (p == nullptr) return;
  if (n > pooled_max) return ::operator delete(p);
  const std::size_t k = class_of(n);
  if (cache_gone) return thread_cache::give_back(k, p);
  stack& mine = cache().free[k];
  if (mine.count == cached_blocks) {
    // Full: half goes to the reserve (what does not fit there, to the heap).
    {
      reserve& r = shared();
      std::lock_guard lock(r.mutex);
      for (std::size_t i = 0; i < batch; ++i) {
        if (r.free[k].count < reserve_blocks) {
          r.free[k].push(mine.pop());
        } else {
          std::free(mine.pop());
        }
      }
    }
  }
  mine.push(p);
}

#endif

}  // namespace framex::detail
