export { RuntimeError, type RuntimeErrorCode } from "./errors.js";
export { type ExternalDataFile, resolveExternalDataFile } from "./external_data.js";
export {
  defaultGraphCacheDir,
  type GraphCacheOutcome,
  type GraphCacheStatus,
} from "./graph_cache.js";
export {
  boolTensor,
  describeTensor,
  elementCount,
  float16Tensor,
  float32Data,
  float32Tensor,
  HOST_TENSOR_TYPES,
  type HostTensor,
  type HostTensorData,
  type HostTensorType,
  hostTensor,
  int32Tensor,
  int64Data,
  int64Tensor,
  uint8Tensor,
  validateHostTensor,
} from "./host_tensor.js";
export type { ValueInfo } from "./protocol.js";
export {
  cudaInstallHint,
  type ExecutionProviderName,
  ExecutionProviderUnavailableError,
  type GraphOptimizationLevel,
  type RuntimeOptions,
  toOrtSessionOptions,
} from "./session_options.js";
export {
  type CreateSessionOptions,
  defaultRuntimeHost,
  RemoteSession,
  RuntimeHost,
  type RuntimeHostOptions,
  type SessionRunOptions,
} from "./worker_host.js";
