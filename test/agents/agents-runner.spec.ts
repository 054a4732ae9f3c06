import { randomUUID } from 'node:crypto';
import { Agent, Runner } from '@openai/agents';
import {
  Usage,
  type AgentInputItem,
  type Model,
  type ModelRequest,
  type ModelResponse,
  type StreamEvent,
} from '@openai/agents-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sqliteHarness, type SessionHarness } from '../support/session-harness.js';
import { findSecret, readDatabaseFiles } from '../support/file-scan.js';

/** A model that answers from a script and records every request; no network. */
class ScriptedModel implements Model {
  readonly requests: ModelRequest[] = [];
  constructor(private readonly replies: string[]) {}

  async getResponse(request: ModelRequest): Promise<ModelResponse> {
    this.requests.push(structuredClone(request));
    const text = this.replies[this.requests.length - 1];
    if (text === undefined) throw new Error('The script has no reply for this turn');
    return {
      usage: new Usage({ requests: 1, inputTokens: 10, outputTokens: 5, totalTokens: 15 }),
      output: [
        {
          type: 'message',
          id: `msg_${this.requests.length}`,
          role: 'assistant',
          status: 'completed',
          content: [{ type: 'output_text', text }],
        },
      ],
    };
  }

  // eslint-disable-next-line require-yield
  async *getStreamedResponse(): AsyncIterable<StreamEvent> {
    throw new Error('This scripted model does not stream');
  }
}

const inputText = (input: ModelRequest['input']): string => JSON.stringify(input);

describe('@openai/agents Runner with an EncryptedSession', () => {
  let harness: SessionHarness;
  beforeEach(async () => {
    harness = await sqliteHarness();
  });
  afterEach(async () => {
    await harness.close();
  });

  it('carries the first turn into the second model call, with no text in the SQLite file', async () => {
    const firstQuestion = `My patient id is PX-${randomUUID()}`;
    const firstAnswer = `Noted, record ANS-${randomUUID()}`;
    const secondQuestion = `What was my id? Q2-${randomUUID()}`;
    const model = new ScriptedModel([firstAnswer, 'It was the one you gave.']);
    const agent = new Agent({ name: 'Intake', instructions: 'Be brief.', model });
    const runner = new Runner({ tracingDisabled: true });
    const session = await harness.service.open(`agents-${randomUUID()}`, {
      subjectId: 'patient-1',
    });

    const first = await runner.run(agent, firstQuestion, { session });
    expect(first.finalOutput).toBe(firstAnswer);
    const second = await runner.run(agent, secondQuestion, { session });
    expect(second.finalOutput).toBe('It was the one you gave.');

    // The second model call saw the first turn's items, in order, before the new question.
    const secondInput = model.requests[1].input as AgentInputItem[];
    const seen = inputText(secondInput);
    expect(seen.indexOf(firstQuestion)).toBeGreaterThanOrEqual(0);
    expect(seen.indexOf(firstAnswer)).toBeGreaterThan(seen.indexOf(firstQuestion));
    expect(seen.indexOf(secondQuestion)).toBeGreaterThan(seen.indexOf(firstAnswer));

    // The session holds both turns: 2 user messages and 2 assistant messages.
    const history = await session.getItems();
    expect(history).toHaveLength(4);

    await harness.storage.close();
    for (const [file, bytes] of Object.entries(readDatabaseFiles(harness.databasePath!))) {
      for (const secret of [firstQuestion, firstAnswer, secondQuestion]) {
        expect(findSecret(bytes, secret), `${file} holds conversation text`).toEqual([]);
      }
    }
  });
});
