// A worker thread's first module: registers tsx's loader in this thread, then runs the TypeScript
// worker (Node 20 does not apply the main thread's loader to worker threads).
import { register } from 'tsx/esm/api';

register();
await import('./thread-worker.ts');
