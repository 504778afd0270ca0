"""The clients of bench/teachers_client.py, each run in its own process (`--client NAME`).

open-r1's generation loop and distilabel's InferenceEndpointsLLM run in the peer venv,
the HTTP stacks alone in hubtools' environment; what each does is in the script's
docstring. `problem(i)` is the workload every client sends.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def problem(i: int) -> tuple[str, int]:
    """A distinct sum per query, so no verification is a cache hit; the server solves it."""
    a, b = 1000 + i, (7919 * i) % 100_003
    return f"Problem {i}. What is {a} + {b}?", a + b


# -- the clients (each runs in its own process) ---------------------------------------------


def client_openr1(args: argparse.Namespace) -> None:
    """open-r1's generate_reasoning.py loop (see the module docstring), written anew."""
    import asyncio
    import random

    import aiofiles
    import aiohttp
    import uvloop
    from tqdm.asyncio import tqdm

    lock = asyncio.Lock()
    url = f"{args.url}/v1/chat/completions"
    out_path = Path(args.workdir) / "openr1.jsonl"

    async def completion(session, prompt):
        budget = 10
        while budget > 0:
            try:
                await asyncio.sleep(random.uniform(0.0, 0.1))
                messages = [{"role": "user", "content": prompt}]
                body = {"model": "default", "messages": messages, "max_tokens": args.max_tokens,
                        "temperature": 0.6, "top_p": 0.95}  # fmt: skip
                headers = {"Authorization": "Bearer EMPTY"}
                async with session.post(url, json=body, headers=headers) as response:
                    return await response.json(content_type=None)
            except Exception as e:
                print(f"API error (will retry): {e}", file=sys.stderr)
                budget -= 1
                await asyncio.sleep(10)
        return None

    async def example(row, session, pbar, active):
        try:
            done = await asyncio.gather(*[completion(session, row["problem"]) for _ in range(1)])
            if any(c is None for c in done):
                print("Error processing example", file=sys.stderr)
                pbar.update(1)
                return
            result = {**row, "generations": [c["choices"][0]["message"]["content"] for c in done],
                      "finish_reasons": [c["choices"][0]["finish_reason"] for c in done],
                      "api_metadata": [c["usage"] for c in done]}  # fmt: skip
            async with lock:
                async with aiofiles.open(out_path, mode="a") as f:
                    await f.write(json.dumps(result) + "\n")
                    await f.flush()
            pbar.set_postfix(active=len(active), refresh=False)
            pbar.update(1)
        except Exception as e:
            print(f"Error processing example: {e}", file=sys.stderr)
            pbar.update(1)

    async def main():
        rows = [{"uuid": i, "problem": problem(i)[0]} for i in range(args.queries)]
        active: set[asyncio.Task] = set()
        pbar = tqdm(total=len(rows), unit="row", mininterval=2, smoothing=0.0001)
        connector = aiohttp.TCPConnector(limit=args.concurrency, ttl_dns_cache=300,
                                         keepalive_timeout=3600)  # fmt: skip
        timeout = aiohttp.ClientTimeout(total=3600)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            for row in rows:
                while len(active) >= args.concurrency:
                    done, active = await asyncio.wait(active, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        try:
                            await task
                        except Exception as e:
                            print(f"Task failed: {e}", file=sys.stderr)
                task = asyncio.create_task(example(row, session, pbar, active))
                active.add(task)
                task.add_done_callback(active.discard)
                pbar.set_postfix(active=len(active), refresh=True)
            if active:
                await asyncio.gather(*active, return_exceptions=True)
        pbar.close()

    uvloop.install()
    asyncio.run(main())


def client_distilabel(args: argparse.Namespace) -> None:
    """distilabel's InferenceEndpointsLLM against a plain base_url, agenerate per query."""
    import asyncio
    import warnings

    warnings.filterwarnings("ignore")
    from distilabel.models.llms import InferenceEndpointsLLM

    llm = InferenceEndpointsLLM(base_url=args.url, api_key="EMPTY", model_display_name="sim")
    llm.load()
    out_path = Path(args.workdir) / "distilabel.jsonl"

    async def main():
        slots = asyncio.Semaphore(args.concurrency)
        buffer: list[dict] = []

        async def one(i: int) -> None:
            async with slots:
                prompt = problem(i)[0]
                out = await llm.agenerate(
                    input=[{"role": "user", "content": prompt}], max_new_tokens=args.max_tokens,
                    temperature=0.6, top_p=0.95,
                )  # fmt: skip
            buffer.append({"uuid": i, "generation": out["generations"][0],
                           "statistics": out["statistics"]})  # fmt: skip
            if len(buffer) >= 50:
                rows, buffer[:] = list(buffer), []
                with open(out_path, "a") as f:
                    f.write("".join(json.dumps(r) + "\n" for r in rows))

        await asyncio.gather(*(one(i) for i in range(args.queries)))
        with open(out_path, "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in buffer))

    asyncio.run(main())


def client_stack(args: argparse.Namespace) -> None:
    """CPU per request of one HTTP stack alone: `concurrency` requests in flight, no store,
    no verification, the default asyncio loop for all. Prints one JSON line."""
    import asyncio

    stack = args.client.removeprefix("stack-")
    messages = [{"role": "user", "content": problem(1)[0]}]
    body = {"model": "sim", "messages": messages, "max_tokens": args.max_tokens,
            "temperature": 0.6, "top_p": 0.95, "seed": 1}  # fmt: skip
    url = f"{args.url}/v1/chat/completions"

    async def main():
        closers = []
        if stack == "aiohttp":
            import aiohttp

            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency))
            closers.append(session.close)

            async def one():
                async with session.post(url, json=body) as response:
                    return await response.json()

        elif stack in ("httpx2", "httpx2-pools"):
            import httpx2

            pools = 1 if stack == "httpx2" else -(-args.concurrency // 32)
            size = -(-args.concurrency // pools) + 16
            limits = httpx2.Limits(max_connections=size, max_keepalive_connections=size)
            clients = [httpx2.AsyncClient(limits=limits, timeout=None) for _ in range(pools)]
            closers.extend(c.aclose for c in clients)
            free = list(range(args.concurrency))

            async def one():
                slot = free.pop()
                try:
                    response = await clients[slot * pools // args.concurrency].post(url, json=body)
                    return response.json()
                finally:
                    free.append(slot)

        else:  # hubtools' TeacherClient: huggingface_hub's AsyncInferenceClient.chat_completion
            from hubtools.records import Query
            from hubtools.teachers.client import TeacherClient
            from hubtools.teachers.config import Sampling, TeacherConfig

            teacher = TeacherConfig(name="sim", endpoint=args.url, model="sim", stream=False,
                                    max_concurrency=args.concurrency)  # fmt: skip
            client = TeacherClient(teacher, Sampling(max_tokens=args.max_tokens), None)
            query = Query.from_prompt(problem(1)[0], category="math", source="bench")
            params = client.params(query, 0)

            async def one():
                return await client.complete(query, params)

        slots = asyncio.Semaphore(args.concurrency)

        async def bounded():
            async with slots:
                return await one()

        await asyncio.gather(*(bounded() for _ in range(args.concurrency)))  # connections up
        wall, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(bounded() for _ in range(args.queries)))
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        for close in closers:
            await close()
        print(json.dumps({"stack": stack, "concurrency": args.concurrency,
                          "requests": args.queries, "rps": round(args.queries / wall, 1),
                          "cpu_ms": round(cpu / args.queries * 1000, 3),
                          "core_util": round(cpu / wall, 3)}))  # fmt: skip

    asyncio.run(main())
