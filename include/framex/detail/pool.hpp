// Recycled memory for what every call allocates and frees again: its state,
// its message buffers, its table entries, the handlers posted for it.
//
// Blocks of up to `pooled_max` bytes come in power-of-two size classes. Each
// thread keeps a few free blocks of each class; a thread that frees more than
// it allocates (an I/O thread freeing a caller's buffers) hands a batch to a
// shared reserve, from which a thread that runs out takes a batch back. The
// reserve is bounded (`reserve_blocks` per class); beyond it blocks go back to
// the heap, so what the pool keeps stays small whatever the load was.
// Larger blocks always come from the heap. Under AddressSanitizer every block
// comes from the heap, so use-after-free and leaks are still found.
#pragma once

#include <cstddef>
#include <new>

namespace framex::detail {

inline constexpr std::size_t pooled_max = std::size_t{64} << 10;

/// A block of at least `n` bytes (aligned as `operator new`). Throws `std::bad_alloc`.
[[nodiscard]] void* pool_allocate(std::size_t n);
/// Gives back a block of `pool_allocate(n)`, with the same `n`. Any thread.
void pool_free(void* p, std::size_t n) noexcept;
/// What `pool_allocate(n)` really hands out, so a buffer may use all of it.
[[nodiscard]] std::size_t pool_block_size(std::size_t n) noexcept;

/// A standard allocator over the pool, for containers and handlers.
template <class T>
struct pool_allocator {
  using value_type = T;
  pool_allocator() noexcept = default;
  template <class U>
  pool_allocator(const pool_allocator<U>&) noexcept {}  // NOLINT: rebinding converts implicitly
  T* allocate(std::size_t n) { return static_cast<T*>(pool_allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { pool_free(p, n * sizeof(T)); }
  template <class U>
  friend bool operator==(const pool_allocator&, const pool_allocator<U>&) noexcept {
    return true;
  }
};

/// Derive from it to have `new` and `delete` of a class use the pool.
struct pooled {
  static void* operator new(std::size_t n) { return pool_allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { pool_free(p, n); }
};

}  // namespace framex::detail
