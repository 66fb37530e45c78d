// The two element-wise delta-pruning kernels of `src/delta/kernels.rs`, bit-identical to the CPU.
// One dispatch covers one chunk of at most 65535·WG elements whose global indices share the same
// high 32-bit word, so the mask index is `lo0 + i` without carry and `hi_mix` is a uniform.

const WG: u32 = 256u;

struct Params {
    n: u32,          // elements in this chunk
    lo0: u32,        // low word of the chunk's first global element index
    hi_mix: u32,     // high_word_mix(high word of the chunk's indices), computed on the CPU
    k0: u32,         // MaskKey
    k1: u32,
    threshold: u32,  // DropThreshold::Below(t): kept when bits >= t
    scale: f32,
    min_abs: f32,
    zero: u32,       // always 0, but the compiler cannot know it (see `no_fma`)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> base: array<f32>;
@group(0) @binding(1) var<storage, read> finetuned: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// lowbias32 (C. Wellons), as `rng::mix32`; WGSL u32 arithmetic wraps like `wrapping_mul`.
fn mix32(x0: u32) -> u32 {
    var x = x0;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

// `MaskKey::bits` for the global index (hi, lo0 + i), with high_word_mix(hi) precomputed.
fn mask_bits(lo: u32) -> u32 {
    let a = mix32(lo ^ p.k0);
    return mix32((a + p.k1) ^ p.hi_mix);
}

// Rounds `x` to f32 in a way no compiler can fuse into a following add: the value goes through
// an integer XOR with a runtime uniform (0), which an FMA cannot absorb, so `b + no_fma(d * s)`
// is two roundings like on the CPU. Drivers may otherwise contract `b + d * s` into fma(d, s, b)
// (WGSL permits it and naga emits no `precise`/NoContraction).
fn no_fma(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) ^ p.zero);
}

@compute @workgroup_size(WG)
fn drop_and_rescale(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if i >= p.n {
        return;
    }
    let b = base[i];
    if mask_bits(p.lo0 + i) >= p.threshold {
        let kept = no_fma((finetuned[i] - b) * p.scale);
        out[i] = b + kept;
    } else {
        out[i] = b;
    }
}

@compute @workgroup_size(WG)
fn magnitude_threshold(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if i >= p.n {
        return;
    }
    let b = base[i];
    let d = finetuned[i] - b;
    if abs(d) >= p.min_abs {
        out[i] = b + d;
    } else {
        out[i] = b;
    }
}
