/**
 * dynalite (an in-process DynamoDB stand-in) on a loopback port, with the ledger table created as
 * the stack creates it (pk S, sk S), and a client that counts its requests.
 */
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
// @ts-expect-error dynalite ships no types
import dynalite from 'dynalite';

export interface Dynalite {
  endpoint: string;
  /** A client for the stand-in; `requests` counts what it sent, by command. */
  client(): CountingClient;
  createLedgerTable(name: string): Promise<void>;
  close(): Promise<void>;
}

export interface CountingClient {
  client: DynamoDBClient;
  requests: Map<string, number>;
  total(): number;
  reset(): void;
}

export async function startDynalite(): Promise<Dynalite> {
  const server = (dynalite as (options: object) => Server)({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = (): CountingClient => {
    const c = new DynamoDBClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
    const requests = new Map<string, number>();
    c.middlewareStack.add(
      (next, context) => async (args) => {
        const name = String(context.commandName);
        requests.set(name, (requests.get(name) ?? 0) + 1);
        return next(args);
      },
      { step: 'initialize', name: 'countRequests' },
    );
    return { client: c, requests, total: () => [...requests.values()].reduce((a, b) => a + b, 0), reset: () => requests.clear() };
  };
  return {
    endpoint,
    client,
    async createLedgerTable(name) {
      const { client: c } = client();
      await c.send(
        new CreateTableCommand({
          TableName: name,
          AttributeDefinitions: [
            { AttributeName: 'pk', AttributeType: 'S' },
            { AttributeName: 'sk', AttributeType: 'S' },
          ],
          KeySchema: [
            { AttributeName: 'pk', KeyType: 'HASH' },
            { AttributeName: 'sk', KeyType: 'RANGE' },
          ],
          BillingMode: 'PAY_PER_REQUEST',
        }),
      );
      c.destroy();
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
