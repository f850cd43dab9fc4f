/**
 * 32-bit Mersenne Twister (MT19937), as used by torch's CPU generator (ATen's `at::mt19937`).
 *
 * Seeding is the standard Knuth initialisation of the reference implementation:
 * `state[0] = seed; state[i] = 1812433253 * (state[i-1] ^ (state[i-1] >>> 30)) + i  (mod 2^32)`.
 * The whole 624-word state is regenerated ("twisted") each time it is used up, and every output is tempered.
 */

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

export class MT19937 {
  private readonly state = new Uint32Array(N);
  private index = N;

  constructor(seed = 5489) {
    this.seed(seed);
  }

  /** Re-initialises the state from a 32-bit seed (only the low 32 bits of `seed32` are used). */
  seed(seed32: number): void {
    const s = this.state;
    s[0] = seed32 >>> 0;
    let prev = s[0];
    for (let i = 1; i < N; i++) {
      prev = (Math.imul(1812433253, prev ^ (prev >>> 30)) + i) >>> 0;
      s[i] = prev;
    }
    this.index = N;
  }

  /** Next tempered 32-bit output, as an unsigned integer in [0, 2^32). */
  nextUint32(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** Copies the full state (including the position in the current block) from another engine. */
  copyFrom(other: MT19937): this {
    this.state.set(other.state);
    this.index = other.index;
    return this;
  }

  private twist(): void {
    const s = this.state;
    let i = 0;
    for (; i < N - M; i++) {
      const y = (s[i]! & UPPER_MASK) | (s[i + 1]! & LOWER_MASK);
      s[i] = s[i + M]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    for (; i < N - 1; i++) {
      const y = (s[i]! & UPPER_MASK) | (s[i + 1]! & LOWER_MASK);
      s[i] = s[i + M - N]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    const y = (s[N - 1]! & UPPER_MASK) | (s[0]! & LOWER_MASK);
    s[N - 1] = s[M - 1]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    this.index = 0;
  }
}
