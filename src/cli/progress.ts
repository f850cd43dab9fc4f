/**
 * Progress on stderr. On a terminal: cli-progress bars (model download, then the denoising steps). Otherwise one
 * JSON object per line, for logs and for programs driving the CLI:
 *
 *   {"event":"download","file":"unet/diffusion_pytorch_model.safetensors","index":3,"count":9,"loaded":..,"total":..}
 *   {"event":"step","step":1,"total":75,"timestep":999,"elapsed_s":1.234}
 *
 * `step` counts completed steps (1..total); `elapsed_s` is measured from the start of the pipeline call.
 * Download lines come at most once a second per file, plus one when a file completes.
 */
import cliProgress from "cli-progress";
import type { DownloadProgress } from "../io/hub.js";
import type { StepInfo } from "../pipelines/upscale_inputs.js";

export interface Progress {
  /** The model starts loading (a line on a terminal; nothing in JSON mode). */
  loading(model: string): void;
  download(p: DownloadProgress): void;
  /** Marks the start of the pipeline call (the origin of elapsed_s). */
  startRun(totalSteps: number): void;
  step(info: StepInfo): void;
  /** Stops any bar (before printing messages or exiting). */
  stop(): void;
}

export interface ProgressOptions {
  stream: NodeJS.WritableStream;
  /** Bars when true, JSON lines when false. */
  tty: boolean;
  /** Clock in milliseconds (tests). */
  now?: () => number;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;
const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

export function createProgress(opts: ProgressOptions): Progress {
  return opts.tty ? new BarProgress(opts) : new JsonLinesProgress(opts);
}

class JsonLinesProgress implements Progress {
  private readonly now: () => number;
  private runStart = 0;
  private lastDownload = new Map<string, number>();

  constructor(private readonly opts: ProgressOptions) {
    this.now = opts.now ?? (() => performance.now());
  }

  private emit(obj: Record<string, unknown>): void {
    this.opts.stream.write(`${JSON.stringify(obj)}\n`);
  }

  download(p: DownloadProgress): void {
    const t = this.now();
    const done = p.total !== undefined && p.loaded >= p.total;
    const last = this.lastDownload.get(p.file);
    if (!done && last !== undefined && t - last < 1000) return;
    this.lastDownload.set(p.file, t);
    this.emit({
      event: "download",
      file: p.file,
      index: p.index,
      count: p.count,
      loaded: p.loaded,
      ...(p.total !== undefined ? { total: p.total } : {}),
    });
  }

  loading(): void {}

  startRun(): void {
    this.runStart = this.now();
  }

  step(info: StepInfo): void {
    this.emit({
      event: "step",
      step: info.step + 1,
      total: info.totalSteps,
      timestep: info.timestep,
      elapsed_s: round3((this.now() - this.runStart) / 1000),
    });
  }

  stop(): void {}
}

class BarProgress implements Progress {
  private bar: cliProgress.SingleBar | undefined;
  private downloadFile: string | undefined;

  constructor(private readonly opts: ProgressOptions) {}

  private newBar(format: string, total: number, payload: Record<string, unknown>): cliProgress.SingleBar {
    this.stop();
    const bar = new cliProgress.SingleBar(
      { format, stream: this.opts.stream, hideCursor: true, barsize: 30, etaBuffer: 20 },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, payload);
    this.bar = bar;
    return bar;
  }

  loading(model: string): void {
    this.stop();
    this.opts.stream.write(`Loading ${model}...\n`);
  }

  download(p: DownloadProgress): void {
    const payload = {
      file: p.file,
      index: p.index,
      count: p.count,
      loadedMb: mb(p.loaded),
      totalMb: p.total === undefined ? "?" : mb(p.total),
    };
    if (this.downloadFile !== p.file || !this.bar) {
      this.downloadFile = p.file;
      this.newBar(
        "Downloading {file} ({index}/{count}) {bar} {percentage}% | {loadedMb}/{totalMb} MB | ETA {eta_formatted}",
        Math.max(p.total ?? 0, 1),
        payload,
      );
    }
    this.bar?.update(Math.min(p.loaded, p.total ?? p.loaded), payload);
  }

  startRun(totalSteps: number): void {
    this.downloadFile = undefined;
    this.newBar(
      "Upscaling {bar} {value}/{total} steps | t={timestep} | {duration_formatted} elapsed | ETA {eta_formatted}",
      totalSteps,
      { timestep: "-" },
    );
  }

  step(info: StepInfo): void {
    this.bar?.update(info.step + 1, { timestep: info.timestep });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
