"""The LLM agents: persona-miner, persona-relater, writer, critic, and the novelty-checker.

Each module holds one agent: a prompt renderer, the call through :class:`personaloom.llm.LLM`,
and the post-processing of the reply. Agents do not touch graph state; the nodes in
``personaloom.graphs`` call them.
"""
