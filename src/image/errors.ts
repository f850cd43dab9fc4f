/** Error for any unusable image input: missing or undecodable file, bad size, bad raw buffer, mismatched batch. */
export class ImageInputError extends Error {
  constructor(
    /** The file path or a short description of the input ("buffer", "raw image", "image 2 of 3"). */
    readonly input: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(`${input}: ${problem}`, options);
    this.name = "ImageInputError";
  }
}
