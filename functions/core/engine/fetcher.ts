/**
 * A worker's fetching machinery: its Agents (one per perHost setting, since connection limits are
 * an Agent option) and the per-job concurrency limits shared by all chunks of a job in this worker.
 */
import pLimit, { type LimitFunction } from 'p-limit';
import type { Agent } from 'undici';
import type { IndexedItem } from '../input.ts';
import type { JobOptions } from '../options.ts';
import { createAgent, type Lookup } from './agent.ts';
import { fetchItem, type FetchResult } from './fetch-item.ts';
import type { AddressGuard } from './guard.ts';

export class Fetcher {
  private readonly agents = new Map<number, Agent>();
  private readonly limits = new Map<string, { limit: LimitFunction; users: number }>();

  constructor(
    readonly guard: AddressGuard,
    /** The resolver; tests give one that answers without a DNS server. */
    private readonly lookup?: Lookup,
  ) {}

  private agentFor(perHost: number): Agent {
    let agent = this.agents.get(perHost);
    if (!agent) {
      agent = createAgent({ perHost, guard: this.guard, lookup: this.lookup });
      this.agents.set(perHost, agent);
    }
    return agent;
  }

  /**
   * The concurrency limit of a job in this worker; call the returned release when the chunk ends.
   * Chunks of the same job processed at once share it, so `concurrency` holds per worker.
   */
  acquireLimit(jobId: string, concurrency: number): { limit: LimitFunction; release: () => void } {
    let entry = this.limits.get(jobId);
    if (!entry) {
      entry = { limit: pLimit(concurrency), users: 0 };
      this.limits.set(jobId, entry);
    }
    entry.users++;
    const held = entry;
    return {
      limit: held.limit,
      release: () => {
        if (--held.users === 0 && this.limits.get(jobId) === held) this.limits.delete(jobId);
      },
    };
  }

  fetch(item: IndexedItem, options: JobOptions, signal?: AbortSignal): Promise<FetchResult> {
    return fetchItem(item, options, { dispatcher: this.agentFor(options.perHost), signal });
  }

  async close(): Promise<void> {
    await Promise.all([...this.agents.values()].map((a) => a.destroy()));
    this.agents.clear();
  }
}
