"""A user's own DSPy program. Nothing in it knows about Rust: `dspy.Retrieve` uses whatever
retrieval model the caller injects, which `DspyProgram` sets to the Rust hybrid retriever."""
import dspy


class CheckClaim(dspy.Signature):
    """Decide whether the evidence supports, refutes, or says nothing about the claim."""

    claim: str = dspy.InputField()
    evidence: str = dspy.InputField()
    verdict: str = dspy.OutputField(desc="SUPPORT, CONTRADICT or NOT_ENOUGH_INFO")
    rationale: str = dspy.OutputField()


class ClaimChecker(dspy.Module):
    def __init__(self, k=3):
        super().__init__()
        self.retrieve = dspy.Retrieve(k=k)
        self.check = dspy.Predict(CheckClaim)

    def forward(self, claim):
        evidence = self.retrieve(claim).passages
        out = self.check(claim=claim, evidence="\n\n".join(evidence))
        return dspy.Prediction(verdict=out.verdict, rationale=out.rationale, evidence=evidence)
