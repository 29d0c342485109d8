"""Cairn's answer path: model gateway, workflow engine, grounded answers with verified citations.

    answers.py        AnswerService: run a workflow for a principal -> AnswerResult / SSE events
    citations.py      [n] markers -> verified citations (pure functions)
    grounded.py       prompts for cited answers; verify-or-abstain decision
    providers/        one model backend per file: extractive (local default), openai, anthropic
    gateway/          aliases -> provider chains: routing, retries, breakers, budgets, accounting
    workflows/        YAML specs, safe expressions, the durable engine, run store, built-ins

Retrieval arrives as an injected `core.llm.Retriever`; nothing here imports ingestion/ or app/.
"""
