/**
 * The storage layout: every key fanout reads or writes, in one place. The same keys are used in the
 * local folder and in the S3 bucket.
 *
 * ```
 * jobs/JOB/job.json                  the request: options, total, chunk count, createdAt
 * jobs/JOB/planning.json             a job still being planned from a large upload (extension)
 * jobs/JOB/rejected.json             why such a job was refused: the bad line (extension)
 * jobs/JOB/list                      a list sent in a request, stored so planning can resume in it (extension)
 * jobs/JOB/input/CHUNK.ndjson.gz     the chunk's items, written at planning (extension)
 * jobs/JOB/results/CHUNK.ndjson.gz   records of one chunk, by index
 * jobs/JOB/chunks/CHUNK.json         the chunk's counts, written once its results exist (extension)
 * jobs/JOB/parts/CHUNK/FROM.ID.ndjson.gz records a delivery kept from item FROM (it ran out of time, or
 *                                    the embedded runtime cut a part), ID the delivery's own (extension)
 * jobs/JOB/parts/CHUNK/FROM.json       {from, to, file} of that part, written once its records are stored;
 *                                    without `file` (earlier versions) the part is FROM.ndjson.gz (extension)
 * jobs/JOB/bodies/INDEX              bodies when bodies=store
 * jobs/JOB/cancel.json               present once the job was cancelled (extension)
 * jobs/JOB/started.json              present once a worker received one of its chunks (extension)
 * jobs/JOB/manifest.json             written once when the job ends
 * jobs/JOB/callback.json             the completion callback's outbox entry: pending, delivered or failed (extension)
 * jobs/JOB/baseline/PART.ndjson.gz  the job's records by key hash, for later runs whose lists do not align (extension)
 * jobs/JOB/baseline/index.json      written once every partition is complete (extension)
 * jobs/JOB/baseline/building.json   the claim of the worker building them; the others wait for index.json (extension)
 * schedules/NAME/runs/INV-JOB.json   one run of a schedule; INV = 9999999999999 - createdAt ms, so newest first (extension)
 * schedules/NAME/last.json           the schedule's last completed run: the next run's baseline (extension)
 * uploads/UPLOAD/upload.json         an upload slot made by POST /uploads (extension)
 * uploads/UPLOAD/list                the list sent to it (extension); deleted once submitted
 * uploads/UPLOAD/claim.json          written when the upload is submitted: it plans one job (extension)
 * ```
 */
import { MalformedIdError } from './errors.ts';

/** UUIDv7: time-ordered, so job ids sort by creation time. */
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Throws unless `id` is a well-formed job id, so an id can never address keys outside its job. */
export function checkJobId(id: string): string {
  if (!JOB_ID.test(id)) throw new MalformedIdError(`malformed job id ${JSON.stringify(id.slice(0, 80))}`);
  return id;
}

/** Schedule names as EventBridge Scheduler allows them, so a name can never leave its folder. */
const SCHEDULE_NAME = /^[A-Za-z0-9_.\-]{1,64}$/;

/** Throws unless `name` is a well-formed schedule name ("." and ".." are refused too). */
export function checkScheduleName(name: string): string {
  if (!SCHEDULE_NAME.test(name) || name === '.' || name === '..') throw new MalformedIdError(`malformed schedule name ${JSON.stringify(name.slice(0, 80))}`);
  return name;
}

/** Run keys sort newest first: this minus the run's creation time (ms), 13 digits. */
const RUN_KEY_MAX = 9_999_999_999_999;

export function isJobId(id: string): boolean {
  return JOB_ID.test(id);
}

/** Upload ids have the same form as job ids, and the same guarantee. */
export function checkUploadId(id: string): string {
  if (!JOB_ID.test(id)) throw new MalformedIdError(`malformed upload id ${JSON.stringify(id.slice(0, 80))}`);
  return id;
}

/** Chunk numbers are zero-padded to 6 digits so keys sort in chunk order. */
export function padChunk(chunk: number): string {
  return String(chunk).padStart(6, '0');
}

export const JOBS_PREFIX = 'jobs/';

export const layout = {
  jobPrefix: (jobId: string) => `jobs/${checkJobId(jobId)}/`,
  job: (jobId: string) => `jobs/${checkJobId(jobId)}/job.json`,
  planning: (jobId: string) => `jobs/${checkJobId(jobId)}/planning.json`,
  rejected: (jobId: string) => `jobs/${checkJobId(jobId)}/rejected.json`,
  list: (jobId: string) => `jobs/${checkJobId(jobId)}/list`,
  input: (jobId: string, chunk: number) => `jobs/${checkJobId(jobId)}/input/${padChunk(chunk)}.ndjson.gz`,
  resultsPrefix: (jobId: string) => `jobs/${checkJobId(jobId)}/results/`,
  results: (jobId: string, chunk: number) => `jobs/${checkJobId(jobId)}/results/${padChunk(chunk)}.ndjson.gz`,
  chunksPrefix: (jobId: string) => `jobs/${checkJobId(jobId)}/chunks/`,
  chunkDone: (jobId: string, chunk: number) => `jobs/${checkJobId(jobId)}/chunks/${padChunk(chunk)}.json`,
  partsPrefix: (jobId: string, chunk: number) => `jobs/${checkJobId(jobId)}/parts/${padChunk(chunk)}/`,
  part: (jobId: string, chunk: number, from: number) => `jobs/${checkJobId(jobId)}/parts/${padChunk(chunk)}/${padChunk(from)}.ndjson.gz`,
  /** A part file only this delivery writes (`delivery`: hex, its own): a concurrent delivery can neither delete nor replace it. */
  deliveryPart: (jobId: string, chunk: number, from: number, delivery: string) => {
    if (!/^[0-9a-f]{8,32}$/.test(delivery)) throw new MalformedIdError(`malformed delivery id ${JSON.stringify(delivery.slice(0, 40))}`);
    return `jobs/${checkJobId(jobId)}/parts/${padChunk(chunk)}/${padChunk(from)}.${delivery}.ndjson.gz`;
  },
  partDone: (jobId: string, chunk: number, from: number) => `jobs/${checkJobId(jobId)}/parts/${padChunk(chunk)}/${padChunk(from)}.json`,
  body: (jobId: string, index: number) => `jobs/${checkJobId(jobId)}/bodies/${index}`,
  cancel: (jobId: string) => `jobs/${checkJobId(jobId)}/cancel.json`,
  started: (jobId: string) => `jobs/${checkJobId(jobId)}/started.json`,
  manifest: (jobId: string) => `jobs/${checkJobId(jobId)}/manifest.json`,
  callback: (jobId: string) => `jobs/${checkJobId(jobId)}/callback.json`,
  baselinePartition: (jobId: string, partition: number) => `jobs/${checkJobId(jobId)}/baseline/${padChunk(partition)}.ndjson.gz`,
  baselineIndex: (jobId: string) => `jobs/${checkJobId(jobId)}/baseline/index.json`,
  baselineClaim: (jobId: string) => `jobs/${checkJobId(jobId)}/baseline/building.json`,
  runsPrefix: (schedule: string) => `schedules/${checkScheduleName(schedule)}/runs/`,
  run: (schedule: string, jobId: string, createdAt: string) =>
    `schedules/${checkScheduleName(schedule)}/runs/${String(RUN_KEY_MAX - Date.parse(createdAt)).padStart(13, '0')}-${checkJobId(jobId)}.json`,
  lastRun: (schedule: string) => `schedules/${checkScheduleName(schedule)}/last.json`,
  upload: (uploadId: string) => `uploads/${checkUploadId(uploadId)}/upload.json`,
  uploadList: (uploadId: string) => `uploads/${checkUploadId(uploadId)}/list`,
  uploadClaim: (uploadId: string) => `uploads/${checkUploadId(uploadId)}/claim.json`,
  uploadPrefix: (uploadId: string) => `uploads/${checkUploadId(uploadId)}/`,
};

/** The chunk number in a `chunks/` or `results/` key. */
export function chunkOfKey(key: string): number {
  const match = /\/(\d{6,})\.[a-z.]+$/.exec(key);
  if (!match) throw new Error(`not a chunk key: ${key}`);
  return Number(match[1]);
}
