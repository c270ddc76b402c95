// Minimal types for autocannon v9 (it ships none): only what the benchmarks use.

declare module 'autocannon' {
  namespace autocannon {
    interface Options {
      url: string;
      method?: string;
      headers?: Record<string, string>;
      body?: string | Buffer;
      connections?: number;
      /** Seconds. */
      duration?: number;
      amount?: number;
      pipelining?: number;
      /** Seconds. */
      timeout?: number;
      title?: string;
    }

    /** hdr-histogram-percentiles-obj. */
    interface Histogram {
      average: number;
      mean: number;
      stddev: number;
      min: number;
      max: number;
      total: number;
      p50: number;
      p90: number;
      p97_5: number;
      p99: number;
      [key: string]: number;
    }

    interface Result {
      title?: string;
      url: string;
      /** Seconds. */
      duration: number;
      connections: number;
      errors: number;
      timeouts: number;
      mismatches: number;
      non2xx: number;
      resets: number;
      '1xx': number;
      '2xx': number;
      '3xx': number;
      '4xx': number;
      '5xx': number;
      statusCodeStats: Record<string, { count: number }>;
      /** Milliseconds. */
      latency: Histogram & { totalCount: number };
      /** Per-second samples; `total` is the number of completed requests, `sent` the number sent. */
      requests: Histogram & { sent: number };
      /** Bytes per second samples; `total` is the number of bytes received. */
      throughput: Histogram;
      start: Date;
      finish: Date;
    }

    interface Instance extends NodeJS.EventEmitter {
      stop(): void;
    }
  }

  function autocannon(
    opts: autocannon.Options,
    callback: (error: Error | null, result: autocannon.Result) => void,
  ): autocannon.Instance;

  export = autocannon;
}
