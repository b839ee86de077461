"""The LLM swarm: an ideator, a coder and a fixer behind the ``Proposer`` interface (``LLMProposer``)."""
from proposers.llm.proposer import LLMProposer

__all__ = ["LLMProposer"]
