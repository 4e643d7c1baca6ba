// Spilled objects: written once under `storage.path/<owner>/<digest>`, read
// once per process (a cache keyed by digest and type), deleted with their
// last reference, or by any process once their owner stopped refreshing its
// `.alive` file for `storage.orphan_ttl`. See framex/detail/object_store.hpp.
#include "framex/detail/object_store.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "framex/detail/actor.hpp"
#include "framex/object_ref.hpp"

namespace framex::detail {
namespace {

namespace fs = std::filesystem;

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    s[2 * i] = digits[p[i] >> 4];
    s[2 * i + 1] = digits[p[i] & 0xf];
  }
  return s;
}

std::string owner_name(std::uint64_t owner) {
  unsigned char b[8];
  for (int i = 7; i >= 0; --i, owner >>= 8) b[i] = static_cast<unsigned char>(owner & 0xff);
  return hex(b, 8);
}

std::array<unsigned char, 32> sha256(std::string_view bytes) {
  std::array<unsigned char, 32> out{};
  unsigned int n = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), out.data(), &n, EVP_sha256(), nullptr) != 1 || n != out.size()) {
    throw std::system_error(make_error_code(errc::object_unavailable), "SHA-256 failed");
  }
  return out;
}

[[noreturn]] void unavailable(const std::string& why) { throw std::system_error(make_error_code(errc::object_unavailable), why); }

// A directory of the store must be this user's own, reached without a
// symbolic link, and writable by nobody else: another user could read the
// spilled arguments and results there, or plant files and links in it.
void check_private(const fs::path& dir) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) unavailable("cannot use " + dir.string() + ": " + std::strerror(errno));
  if (S_ISLNK(st.st_mode)) unavailable(dir.string() + " is a symbolic link: the object store follows none");
  if (!S_ISDIR(st.st_mode)) unavailable(dir.string() + " is not a directory");
  if (st.st_uid != ::geteuid()) {
    unavailable(dir.string() + " belongs to another user (uid " + std::to_string(st.st_uid) +
                "): set storage.path to a directory of your own");
  }
  if ((st.st_mode & 022) != 0) {
    unavailable(dir.string() + " is writable by group or others: chmod 700 it, or set storage.path to a private directory");
  }
}

// `dir` made (0700) if it is missing, then checked.
void make_private(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) unavailable("cannot make " + dir.string() + ": " + std::strerror(errno));
  check_private(dir);
}

std::string describe(const object_id& id) {
  return "object " + id.name() + " (" + std::to_string(id.size) + " bytes, of process " + owner_name(id.owner) + ")";
}

struct cache_entry {
  std::mutex loading;  // held while the object is read: one reader per object
  std::shared_ptr<const void> value;  // written under both `loading` and the cache's mutex
  std::uint64_t size = 0;
  std::uint64_t used = 0;
};

class store {
 public:
  void configure(const config::storage_section& s) {
    {
      std::lock_guard lock(mutex_);
      root_ = s.path.empty() ? fs::temp_directory_path() / "framex-objects" : fs::path(s.path);
      ttl_ = s.orphan_ttl;
      cache_limit_ = s.cache_bytes;
    }
    threshold_.store(s.inline_threshold, std::memory_order_relaxed);
    start_sweeping();
    settings_changed_.notify_all();
  }

  std::size_t threshold() const noexcept { return threshold_.load(std::memory_order_relaxed); }

  std::shared_ptr<const spilled_object> spill(std::string_view packed, std::uint64_t owner) {
    const bool own = owner == 0 || owner == caller_id();
    object_id id{sha256(packed), packed.size(), own ? caller_id() : owner};
    const fs::path dir = root() / owner_name(id.owner);
    const fs::path file = dir / id.name();
    std::lock_guard lock(registry_mutex_);
    if (own) {
      if (auto live = registry_[id.name()].lock()) return live;
      own_dirs_.insert(dir);
    }
    std::error_code ec;
    if (fs::file_size(file, ec) != packed.size()) write(dir, file, packed, describe(id));
    auto handle = std::make_shared<const spilled_object>(id, own);
    if (own) registry_[id.name()] = handle;
    start_sweeping();
    return handle;
  }

  std::shared_ptr<const spilled_object> adopt(const object_id& id) {
    if (id.owner != caller_id()) return std::make_shared<const spilled_object>(id, false);
    std::lock_guard lock(registry_mutex_);
    auto& slot = registry_[id.name()];
    if (auto live = slot.lock()) return live;
    auto handle = std::make_shared<const spilled_object>(id, true);
    slot = handle;
    return handle;
  }

  // The last handle of an object of this process is gone: unless a new one
  // was made for the same content meanwhile, its file goes.
  void release(const object_id& id) noexcept {
    try {
      std::lock_guard lock(registry_mutex_);
      const auto it = registry_.find(id.name());
      if (it != registry_.end()) {
        if (!it->second.expired()) return;
        registry_.erase(it);
      }
      std::error_code ec;
      if (fs::remove(root() / owner_name(id.owner) / id.name(), ec)) counters_.objects_deleted.fetch_add(1, std::memory_order_relaxed);
    } catch (...) {  // an allocation failing while deleting: the orphan sweep takes the file later
    }
  }

  std::shared_ptr<const void> load(const object_id& id, const std::string& type, object_decoder decode) {
    std::shared_ptr<cache_entry> entry;
    {
      std::lock_guard lock(cache_mutex_);
      auto& e = cache_[id.name() + "/" + type];
      if (!e) e = std::make_shared<cache_entry>();
      e->used = ++tick_;
      entry = e;
    }
    std::lock_guard loading(entry->loading);
    if (entry->value) {
      counters_.cache_hits.fetch_add(1, std::memory_order_relaxed);
      return entry->value;
    }
    const std::string bytes = read(id);
    msgpack::object_handle handle;
    try {
      std::size_t offset = 0;
      bool referenced = false;
      handle = msgpack::unpack(bytes.data(), bytes.size(), offset, referenced, [](msgpack::type::object_type, std::size_t, void*) { return true; });
      if (offset != bytes.size()) throw msgpack::unpack_error("trailing bytes");
    } catch (const msgpack::unpack_error& e) {
      unavailable(describe(id) + " is not a msgpack value: " + e.what());
    }
    std::shared_ptr<const void> value;
    try {
      value = decode(handle.get());
    } catch (const decode_error& e) {
      throw decode_error(e.expected(), "the " + describe(id) + ", which does not decode (" + e.what() + ")");
    }
    std::lock_guard lock(cache_mutex_);  // eviction reads every entry's value under it
    entry->value = value;
    entry->size = id.size;
    cached_bytes_ += id.size;
    evict(entry.get());
    return value;
  }

  void write_snapshot(std::uint64_t owner, std::uint64_t key, std::string_view bytes) {
    const fs::path dir = root() / owner_name(owner);
    write(dir, dir / ("actor-" + owner_name(key)), bytes, "the snapshot of actor " + owner_name(key));
  }

  std::optional<std::string> read_snapshot(std::uint64_t owner, std::uint64_t key) {
    const fs::path dir = root() / owner_name(owner);
    const fs::path file = dir / ("actor-" + owner_name(key));
    if (fs::exists(dir)) check_private(dir);
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      if (errno == ENOENT) return std::nullopt;
      unavailable("cannot read the snapshot " + file.string() + ": " + std::strerror(errno));
    }
    std::string bytes;
    char chunk[65536];
    for (ssize_t n; (n = ::read(fd, chunk, sizeof chunk)) != 0;) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const std::string why = std::strerror(errno);
        ::close(fd);
        unavailable("cannot read the snapshot " + file.string() + ": " + why);
      }
      bytes.append(chunk, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return bytes;
  }

  void remove_snapshot(std::uint64_t key) noexcept {
    try {
      std::error_code ec;
      fs::remove(root() / owner_name(caller_id()) / ("actor-" + owner_name(key)), ec);
    } catch (...) {  // a store that is not private: nothing of ours was written there
    }
  }

  storage_stats counters() const noexcept {
    storage_stats s;
    s.objects_written = counters_.objects_written.load(std::memory_order_relaxed);
    s.bytes_written = counters_.bytes_written.load(std::memory_order_relaxed);
    s.objects_read = counters_.objects_read.load(std::memory_order_relaxed);
    s.bytes_read = counters_.bytes_read.load(std::memory_order_relaxed);
    s.cache_hits = counters_.cache_hits.load(std::memory_order_relaxed);
    s.objects_deleted = counters_.objects_deleted.load(std::memory_order_relaxed);
    s.orphans_deleted = counters_.orphans_deleted.load(std::memory_order_relaxed);
    return s;
  }

 private:
  // The store's root, made private if missing (its parents as needed) and
  // checked before each use.
  fs::path root() const {
    fs::path r;
    {
      std::lock_guard lock(mutex_);
      r = root_;
    }
    std::error_code ec;
    if (!fs::exists(r, ec) && r.has_parent_path()) fs::create_directories(r.parent_path(), ec);
    make_private(r);
    return r;
  }

  // Writes the file whole, then renames it into place: a reader sees all or
  // nothing. `what` names it in errors.
  void write(const fs::path& dir, const fs::path& file, std::string_view bytes, const std::string& what) {
    std::error_code ec;
    const bool fresh = !fs::exists(dir, ec);
    make_private(dir);
    if (fresh) touch(dir / ".alive");
    std::uint64_t nonce = 0;
    RAND_bytes(reinterpret_cast<unsigned char*>(&nonce), sizeof nonce);
    const fs::path temp = dir / (file.filename().string() + ".part-" + owner_name(nonce));
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) unavailable("cannot write " + what + " to " + temp.string() + ": " + std::strerror(errno));
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const std::string why = std::strerror(errno);
        ::close(fd);
        fs::remove(temp, ec);
        unavailable("cannot write " + what + " to " + temp.string() + ": " + why);
      }
      done += static_cast<std::size_t>(n);
    }
    if (::close(fd) != 0 || ::rename(temp.c_str(), file.c_str()) != 0) {
      const std::string why = std::strerror(errno);
      fs::remove(temp, ec);
      unavailable("cannot write " + what + " to " + file.string() + ": " + why);
    }
    counters_.objects_written.fetch_add(1, std::memory_order_relaxed);
    counters_.bytes_written.fetch_add(bytes.size(), std::memory_order_relaxed);
  }

  std::string read(const object_id& id) {
    const fs::path dir = root() / owner_name(id.owner);
    const fs::path file = dir / id.name();
    if (fs::exists(dir)) check_private(dir);
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      unavailable(describe(id) + " is not at " + file.string() + " (" + std::strerror(errno) +
                  "): deleted, or this process's storage.path is not the one its writer uses");
    }
    struct stat st {};
    std::string bytes;
    if (::fstat(fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) == id.size) {
      bytes.resize(id.size);
      std::size_t done = 0;
      while (done < bytes.size()) {
        const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
      }
      bytes.resize(done);
    }
    ::close(fd);
    if (bytes.size() != id.size || sha256(bytes) != id.digest) {
      unavailable(describe(id) + " at " + file.string() + " is corrupt: its content does not match its digest");
    }
    counters_.objects_read.fetch_add(1, std::memory_order_relaxed);
    counters_.bytes_read.fetch_add(id.size, std::memory_order_relaxed);
    return bytes;
  }

  // Under cache_mutex_: drops the least recently used objects nobody holds
  // until the cache fits (`keep`, just loaded, stays).
  void evict(const cache_entry* keep) {
    while (cached_bytes_ > cache_limit_) {
      auto victim = cache_.end();
      for (auto it = cache_.begin(); it != cache_.end(); ++it) {
        const auto& e = *it->second;
        if (&e == keep || !e.value || e.value.use_count() > 1) continue;
        if (victim == cache_.end() || e.used < victim->second->used) victim = it;
      }
      if (victim == cache_.end()) return;
      cached_bytes_ -= victim->second->size;
      cache_.erase(victim);
    }
  }

  static void touch(const fs::path& file) {
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return;
    ::futimens(fd, nullptr);
    ::close(fd);
  }

  // A thread for the life of the process: refreshes this process's `.alive`
  // and deletes the directories of processes that stopped refreshing theirs.
  void start_sweeping() {
    std::call_once(sweeper_started_, [this] {
      // The id is made here, not on the thread: its first use initialises
      // OpenSSL's random generator, which the process's exit tears down on
      // this thread.
      const std::uint64_t me = caller_id();
      std::thread([this, me] { sweep_forever(me); }).detach();
    });
  }

  [[noreturn]] void sweep_forever(std::uint64_t me) {
    for (;;) {
      fs::path root;
      std::chrono::milliseconds ttl;
      {
        std::lock_guard lock(mutex_);
        root = root_;
        ttl = ttl_;
      }
      sweep(root, ttl, me);
      std::unique_lock lock(mutex_);
      settings_changed_.wait_for(lock, std::clamp(ttl / 3, std::chrono::milliseconds(200), std::chrono::milliseconds(60000)));
    }
  }

  void sweep(const fs::path& root, std::chrono::milliseconds ttl, std::uint64_t me) {
    std::error_code ec;
    const fs::path mine = root / owner_name(me);
    try {
      if (fs::exists(mine, ec)) {
        check_private(root);
        check_private(mine);
        touch(mine / ".alive");
      }
    } catch (const std::system_error&) {  // not private: written to by nobody, the sweeper included
      return;
    }
    for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.size() != 16 || name.find_first_not_of("0123456789abcdef") != std::string::npos || it->path() == mine) continue;
      std::error_code e;
      auto seen = fs::last_write_time(it->path() / ".alive", e);
      if (e) seen = fs::last_write_time(it->path(), e);
      if (e || fs::file_time_type::clock::now() - seen < ttl) continue;
      if (fs::remove_all(it->path(), e) > 0 && !e) counters_.orphans_deleted.fetch_add(1, std::memory_order_relaxed);
    }
  }

 public:
  // At a clean exit: this process's directories go, its `.alive` with them;
  // nothing in them outlives it (an exit without this is left to the sweepers
  // of others, after the orphan TTL).
  void remove_own_directories() noexcept {
    std::lock_guard lock(registry_mutex_);
    for (const auto& dir : own_dirs_) {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
    own_dirs_.clear();
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable settings_changed_;
  fs::path root_ = fs::temp_directory_path() / "framex-objects";
  std::chrono::milliseconds ttl_{600000};
  std::atomic<std::size_t> threshold_{std::size_t{1} << 20};
  std::once_flag sweeper_started_;

  std::mutex registry_mutex_;
  std::unordered_map<std::string, std::weak_ptr<const spilled_object>> registry_;
  std::set<fs::path> own_dirs_;  // under registry_mutex_: where this process's objects went

  std::mutex cache_mutex_;
  std::unordered_map<std::string, std::shared_ptr<cache_entry>> cache_;
  std::uint64_t cached_bytes_ = 0, tick_ = 0;
  std::size_t cache_limit_ = std::size_t{1} << 30;

  struct {
    std::atomic<std::uint64_t> objects_written{0}, bytes_written{0}, objects_read{0}, bytes_read{0}, cache_hits{0},
        objects_deleted{0}, orphans_deleted{0};
  } counters_;
};

// Never destroyed: handles may be released, and the sweeper runs, until the process ends.
store& the_store() {
  static store* s = [] {
    auto* made = new store;
    std::atexit([] { the_store().remove_own_directories(); });
    return made;
  }();
  return *s;
}

std::uint64_t get_u64(const char* at) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | static_cast<unsigned char>(at[i]);
  return v;
}

}  // namespace

std::string object_id::name() const { return hex(digest.data(), digest.size()); }

std::optional<object_id> object_id_of(const msgpack::object& o) {
  if (o.type != msgpack::type::EXT || o.via.ext.type() != object_ext_type) return std::nullopt;
  if (o.via.ext.size != object_ext_size) {
    throw decode_error("an object reference (ext of " + std::to_string(object_ext_size) + " bytes)",
                       "ext of " + std::to_string(o.via.ext.size) + " bytes");
  }
  object_id id;
  std::memcpy(id.digest.data(), o.via.ext.data(), id.digest.size());
  id.size = get_u64(o.via.ext.data() + 32);
  id.owner = get_u64(o.via.ext.data() + 40);
  if (id.owner == 0) throw decode_error("an object reference", "one naming no owner");
  return id;
}

spilled_object::~spilled_object() {
  if (owned_) the_store().release(id_);
}

void configure_storage(const config::storage_section& settings) { the_store().configure(settings); }
std::size_t inline_threshold() noexcept { return the_store().threshold(); }
std::shared_ptr<const spilled_object> spill(std::string_view packed, std::uint64_t owner) { return the_store().spill(packed, owner); }
std::shared_ptr<const spilled_object> adopt(const object_id& id) { return the_store().adopt(id); }
std::shared_ptr<const void> load_object(const object_id& id, const std::string& type, object_decoder decode) {
  return the_store().load(id, type, decode);
}
void write_snapshot(std::uint64_t owner, std::uint64_t key, std::string_view bytes) { the_store().write_snapshot(owner, key, bytes); }
std::optional<std::string> read_snapshot(std::uint64_t owner, std::uint64_t key) { return the_store().read_snapshot(owner, key); }
void remove_snapshot(std::uint64_t key) noexcept { the_store().remove_snapshot(key); }

}  // namespace framex::detail

namespace framex {
storage_stats storage_counters() noexcept { return detail::the_store().counters(); }
}  // namespace framex
