// C++ Verilator harness of the Accelerator (proxima.hdl.accel), driven by
// proxima.sim.harness: no Python in the simulation loop.
//
// Usage: accel_sim <run folder>
//
// The run folder holds (written by proxima.sim.harness.write_inputs):
//   params.txt   "key value" lines: dim, queries, w_query, w_cb, cb_beats, beat_bytes,
//                p_valid, p_ready (probabilities, >= 1: never stall), seed, max_inflight
//                (0: no limit), max_cycles, progress_every, entry, entry_code, geom (hex:
//                the geometry registers, hdl.nandctl.geometry_word), core_words (the
//                design's store words per core), file_core_words (store.bin's);
//   store.bin    the store's bytes (Accelerator.store_image): file_core_words words per
//                core, word i = bytes [i * beat_bytes, (i + 1) * beat_bytes), little-endian;
//                design address a = core * core_words + w reads file word
//                core * file_core_words + w, zeros where w >= file_core_words (the image is
//                smaller than the design's store: one build serves every image that fits);
//   cb.bin       cb_beats codebook write beats, w_cb uint32 words each (little-endian);
//   query.bin    queries * dim query beats ({tag, data}), w_query uint32 words each.
// It writes:
//   mon.bin      per access accepted by the controller (mon_valid): uint32 cycle, tag,
//                core, page, offset, kind;
//   result.bin   per result beat taken: uint32 cycle, then the payload's words;
//   stats.bin    per stats beat taken: uint32 cycle, then the payload's words;
//   summary.json cycles (first query cycle to idle), settle, wall_s, cb_cycles, status
//                ("ok" / "timeout" / "not idle"), stats taken, the global counters;
//   progress     the number of stats beats taken, rewritten every progress_every cycles.
//
// Cycle rules (those of the cocotb bench sim/tb/tb_accel.py): in each cycle the harness
// drives the inputs, evaluates, samples the outputs (handshakes of this cycle, the
// monitor, the store port's address), then the rising edge.  The store port is a
// synchronous read port with enable: the word addressed in a cycle with store_en is on
// store_data from the next cycle on, and held.  After the reset the codebook is written
// through cb_wr, then soft_reset is pulsed for one cycle (the counters start from zero),
// then the queries are streamed: a query's beat is offered, in a cycle without a beat on
// offer, with probability p_valid (and, with max_inflight, only while fewer than
// max_inflight queries are unfinished); result and stats are ready with probability
// p_ready per cycle.  When every stats beat is taken, the harness clocks until idle (at
// most 64 cycles).

#include "Vproxima_accel.h"
#include "accel_ports.h"
#include "verilated.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

typedef Vproxima_accel Top;

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "accel_sim: %s\n", msg.c_str());
    std::exit(3);
}

// ---- port access: scalar ports (CData .. QData) and wide ones (VlWide) -----------------
template <typename T> void put(T& s, const uint32_t* w, int n) {
    uint64_t v = n > 0 ? w[0] : 0;
    if (sizeof(T) > 4 && n > 1) v |= uint64_t(w[1]) << 32;
    s = T(v);
}
template <std::size_t N> void put(VlWide<N>& s, const uint32_t* w, int n) {
    for (std::size_t i = 0; i < N; ++i) s[i] = int(i) < n ? w[i] : 0;
}
template <typename T> void get(const T& s, uint32_t* w, int n) {
    uint64_t v = s;
    for (int i = 0; i < n; ++i) w[i] = i < 2 ? uint32_t(v >> (32 * i)) : 0;
}
template <std::size_t N> void get(const VlWide<N>& s, uint32_t* w, int n) {
    for (int i = 0; i < n; ++i) w[i] = std::size_t(i) < N ? s[i] : 0;
}
template <typename T> constexpr int words_of(const T&) { return (sizeof(T) + 3) / 4; }
template <std::size_t N> constexpr int words_of(const VlWide<N>&) { return int(N); }

// store word -> store_data (little-endian bytes)
template <typename T> void put_bytes(T& s, const uint8_t* b, int nbytes) {
    uint64_t v = 0;
    for (int i = nbytes - 1; i >= 0; --i) v = (v << 8) | b[i];
    s = T(v);
}
template <std::size_t N> void put_bytes(VlWide<N>& s, const uint8_t* b, int nbytes) {
    for (std::size_t i = 0; i < N; ++i) {
        uint32_t x = 0;
        for (int j = 3; j >= 0; --j) {
            int k = int(4 * i) + j;
            x = (x << 8) | (k < nbytes ? b[k] : 0);
        }
        s[i] = x;
    }
}

// ---- inputs --------------------------------------------------------------------------------
std::vector<uint8_t> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) die("cannot open " + path);
    std::vector<uint8_t> out(std::size_t(f.tellg()));
    f.seekg(0);
    if (!out.empty() && !f.read(reinterpret_cast<char*>(out.data()), std::streamsize(out.size())))
        die("cannot read " + path);
    return out;
}

std::vector<uint32_t> read_words(const std::string& path) {
    std::vector<uint8_t> b = read_file(path);
    if (b.size() % 4) die(path + ": not a whole number of 32-bit words");
    std::vector<uint32_t> w(b.size() / 4);
    for (std::size_t i = 0; i < w.size(); ++i)
        w[i] = b[4 * i] | (b[4 * i + 1] << 8) | (b[4 * i + 2] << 16) | (uint32_t(b[4 * i + 3]) << 24);
    return w;
}

std::map<std::string, std::string> read_params(const std::string& path) {
    std::ifstream f(path);
    if (!f) die("cannot open " + path);
    std::map<std::string, std::string> out;
    std::string k, v;
    while (f >> k >> v) out[k] = v;
    return out;
}

std::vector<uint32_t> hex_words(const std::string& hex) {  // little-endian 32-bit words
    std::vector<uint32_t> w;
    for (int end = int(hex.size()); end > 0; end -= 8) {
        int start = end > 8 ? end - 8 : 0;
        w.push_back(uint32_t(std::stoul(hex.substr(start, end - start), nullptr, 16)));
    }
    return w;
}

// xoshiro256** seeded through splitmix64: the stall decisions
struct Rng {
    uint64_t s[4];
    explicit Rng(uint64_t seed) {
        for (auto& x : s) {
            seed += 0x9E3779B97F4A7C15ull;
            uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            x = z ^ (z >> 31);
        }
    }
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t next() {
        uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
        return r;
    }
    // true with probability p (p >= 1: always, without a draw)
    bool chance(double p) { return p >= 1.0 || double(next() >> 11) * 0x1.0p-53 < p; }
};

struct Out {
    FILE* f;
    explicit Out(const std::string& path) : f(std::fopen(path.c_str(), "wb")) {
        if (!f) die("cannot write " + path);
    }
    ~Out() { std::fclose(f); }
    void put(const uint32_t* w, int n) { std::fwrite(w, 4, n, f); }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) die("usage: accel_sim <run folder>");
    const std::string dir = argv[1];
    auto P = read_params(dir + "/params.txt");
    auto num = [&](const char* k) -> std::string {
        auto it = P.find(k);
        if (it == P.end()) die(std::string("params.txt has no ") + k);
        return it->second;
    };
    const int dim = std::stoi(num("dim"));
    const uint64_t n_queries = std::stoull(num("queries"));
    const int w_query = std::stoi(num("w_query")), w_cb = std::stoi(num("w_cb"));
    const uint64_t cb_beats = std::stoull(num("cb_beats"));
    const int beat_bytes = std::stoi(num("beat_bytes"));
    const double p_valid = std::stod(num("p_valid")), p_ready = std::stod(num("p_ready"));
    const uint64_t max_inflight = std::stoull(num("max_inflight"));
    const uint64_t max_cycles = std::stoull(num("max_cycles"));
    const uint64_t progress_every = std::stoull(num("progress_every"));
    Rng rng(std::stoull(num("seed")));

    const std::vector<uint8_t> store = read_file(dir + "/store.bin");
    const std::vector<uint32_t> cb = read_words(dir + "/cb.bin");
    const std::vector<uint32_t> qb = read_words(dir + "/query.bin");
    if (cb.size() != cb_beats * w_cb) die("cb.bin does not hold cb_beats beats");
    if (qb.size() != n_queries * dim * w_query) die("query.bin does not hold queries * dim beats");
    const uint64_t n_beats = n_queries * dim;
    const uint64_t store_words = store.size() / beat_bytes;
    const uint64_t core_words = std::stoull(num("core_words"));
    const uint64_t file_core_words = std::stoull(num("file_core_words"));
    if (core_words == 0 || file_core_words == 0 || file_core_words > core_words)
        die("params.txt: bad core_words / file_core_words");
    const std::vector<uint8_t> zero_word(std::size_t(beat_bytes), 0);

    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(argc, argv);
    auto top = std::make_unique<Top>(ctx.get(), "top");
    const int w_result = words_of(top->result___05Fpayload);
    const int w_stats = words_of(top->stats___05Fpayload);
    if (w_query != words_of(top->query___05Fpayload) || w_cb != words_of(top->cb_wr___05Fpayload))
        die("params.txt: port widths differ from the design's");

    {
        auto e = hex_words(num("entry")), ec = hex_words(num("entry_code"));
        put(top->entry, e.data(), int(e.size()));
        put(top->entry_code, ec.data(), int(ec.size()));
        auto g = hex_words(num("geom"));
        put(top->geom, g.data(), int(g.size()));
    }
    top->query___05Fvalid = 0;
    top->cb_wr___05Fvalid = 0;
    top->result___05Fready = 0;
    top->stats___05Fready = 0;
    top->soft_reset = 0;
    top->clk = 0;
    const uint64_t NO_WORD = ~uint64_t(0);
    uint64_t store_next = 0;  // the word shown on store_data (NO_WORD: zeros)
    bool store_pending = false;
    put_bytes(top->store_data, store.data(), 0);

    auto serve_store = [&]() {  // after an edge: the word addressed before it
        if (store_pending) {
            put_bytes(top->store_data, store_next == NO_WORD ? zero_word.data()
                      : store.data() + store_next * beat_bytes, beat_bytes);
            store_pending = false;
        }
    };
    auto sample_store = [&]() {
        if (top->store_en) {
            const uint64_t a = top->store_addr;
            const uint64_t core = a / core_words, w = a % core_words;
            const uint64_t f = core * file_core_words + w;
            store_next = (w < file_core_words && f < store_words) ? f : NO_WORD;
            store_pending = true;
        }
    };
    auto edge = [&]() {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        serve_store();
    };

    // reset
    top->rst = 1;
    for (int i = 0; i < 3; ++i) {
        top->eval();
        sample_store();
        edge();
    }
    top->rst = 0;

    // codebook
    uint64_t cb_cycles = 0;
    for (uint64_t i = 0; i < cb_beats;) {
        put(top->cb_wr___05Fpayload, &cb[i * w_cb], w_cb);
        top->cb_wr___05Fvalid = 1;
        top->eval();
        sample_store();
        if (top->cb_wr___05Fready) ++i;
        edge();
        if (++cb_cycles > 16 * cb_beats + 1000) die("cb_wr not ready");
    }
    top->cb_wr___05Fvalid = 0;
    top->soft_reset = 1;
    top->eval();
    sample_store();
    edge();
    top->soft_reset = 0;

    Out mon(dir + "/mon.bin"), res(dir + "/result.bin"), st(dir + "/stats.bin");
    std::vector<uint32_t> buf(1 + (w_stats > w_result ? w_stats : w_result));
    uint64_t sent = 0, taken = 0, cycle = 0, accesses = 0, settle = 0;
    bool offering = false;
    const std::string prog = dir + "/progress";
    std::string status = "ok";
    auto t0 = std::chrono::steady_clock::now();

    while (taken < n_queries) {
        if (cycle >= max_cycles) {
            status = "timeout";
            break;
        }
        // drive
        if (!offering && sent < n_beats) {
            bool gate = true;
            if (max_inflight && sent % dim == 0 && sent / dim - taken >= max_inflight) gate = false;
            if (gate && rng.chance(p_valid)) {
                offering = true;
                put(top->query___05Fpayload, &qb[sent * w_query], w_query);
            }
        }
        top->query___05Fvalid = offering;
        const bool r_ready = rng.chance(p_ready), s_ready = rng.chance(p_ready);
        top->result___05Fready = r_ready;
        top->stats___05Fready = s_ready;
        top->eval();
        // sample
        sample_store();
        if (top->mon_valid) {
            uint32_t m[6] = {uint32_t(cycle), uint32_t(top->mon_tag), uint32_t(top->mon_core),
                             uint32_t(top->mon_page), uint32_t(top->mon_offset),
                             uint32_t(top->mon_kind)};
            mon.put(m, 6);
            ++accesses;
        }
        if (offering && top->query___05Fready) {
            ++sent;
            offering = false;
        }
        if (r_ready && top->result___05Fvalid) {
            buf[0] = uint32_t(cycle);
            get(top->result___05Fpayload, &buf[1], w_result);
            res.put(buf.data(), 1 + w_result);
        }
        if (s_ready && top->stats___05Fvalid) {
            buf[0] = uint32_t(cycle);
            get(top->stats___05Fpayload, &buf[1], w_stats);
            st.put(buf.data(), 1 + w_stats);
            ++taken;
        }
        if (progress_every && cycle % progress_every == 0) {
            FILE* f = std::fopen(prog.c_str(), "w");
            if (f) {
                std::fprintf(f, "%llu", (unsigned long long)taken);
                std::fclose(f);
            }
        }
        edge();
        ++cycle;
    }
    top->query___05Fvalid = 0;
    top->result___05Fready = 0;
    top->stats___05Fready = 0;
    if (status == "ok") {
        for (;; ++settle) {
            top->eval();
            sample_store();
            if (top->idle) break;
            if (settle >= 64) {
                status = "not idle";
                break;
            }
            edge();
        }
    }
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    top->eval();
    uint32_t busy[PX_CORES];
    px_core_busy(top.get(), busy);
    std::ostringstream js;
    js << "{\"status\": \"" << status << "\", \"cycles\": " << cycle + settle
       << ", \"settle\": " << settle << ", \"wall_s\": " << wall << ", \"cb_cycles\": " << cb_cycles
       << ", \"taken\": " << taken << ", \"sent_beats\": " << sent << ", \"accesses\": " << accesses
       << ", \"globals\": {\"g_cycles\": " << uint64_t(top->g_cycles)
       << ", \"g_busy\": " << uint64_t(top->g_busy) << ", \"g_queries\": " << uint64_t(top->g_queries)
       << ", \"g_arb_wait\": " << uint64_t(top->g_arb_wait) << ", \"g_sort\": " << uint64_t(top->g_sort)
       << ", \"idle\": " << int(top->idle)
       << ", \"core_busy\": [";
    for (int c = 0; c < PX_CORES; ++c) js << (c ? ", " : "") << busy[c];
    js << "]}}\n";
    {
        std::ofstream f(dir + "/summary.json");
        f << js.str();
    }
    {
        FILE* f = std::fopen(prog.c_str(), "w");
        if (f) {
            std::fprintf(f, "%llu", (unsigned long long)taken);
            std::fclose(f);
        }
    }
    top->final();
    return status == "ok" ? 0 : 2;
}
