"""Figures for spectral_features_mnist, each regenerated from a run's saved results:
worst-case change against eps (which side of the truth each curve bounds is in its
label), lambda_2 / lambda_3 / gap against T, the spectral lower bound against the
measured edge changes of each feature, and classifier accuracy against k."""

from __future__ import annotations

from common import plotting


def worst_case_vs_eps(record, out):
    """Mean over test images of the worst-case change of each normalised feature under an
    l2 budget eps: spectral (b) exact over membership patterns = upper bound; spectral
    (a) at (b)'s worst patterns = search (lower bound on its pattern maximum); PCA
    exact; network PGD = lower bound, global Lipschitz = upper bound."""
    rob = record.result("robustness")
    eps = rob["eps"]
    fig, ax = plotting.subplots(figsize=(5.6, 4.0))
    ax.plot(eps, [rob["spectral_b"][str(e)]["mean"] for e in eps], "o-", color="#1b9e77",
            label="spectral (b) neighbour mean: exact over patterns (upper bound)")
    a_eps = rob["augmented_eps"]
    pts = rob["spectral_a"]
    if pts:
        ax.plot(a_eps, [sum(p["by_eps"][str(e)] for p in pts) / len(pts) for e in a_eps], "s--",
                color="#66a61e", label=f"spectral (a) augmented graph: search ({len(pts)} images, lower bound)")
    ax.plot(eps, [e * rob["pca_w_norm"] / rob["pca_std"] for e in eps], "^-", color="#7570b3",
            label="PCA direction 1: exact")
    ax.plot(eps, [rob["network_pgd"][str(e)]["mean"] for e in eps], "v-", color="#d95f02",
            label="network penultimate: PGD (lower bound)")
    ax.plot(eps, [rob["network_lipschitz"] * e for e in eps], ":", color="#d95f02",
            label="network: global Lipschitz (upper bound)")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_xlabel("l2 budget eps (pixels in [0, 1])")
    ax.set_ylabel("worst-case |change| of the feature (in std)")
    ax.set_title("Worst-case change of a normalised feature", fontsize=9)
    ax.legend(fontsize=6.5)
    return plotting.save(fig, out / "worst_case_vs_eps")


def eigenvalues_vs_T(record, out):
    """lambda_2, lambda_3 and the gap of the threshold graph's Laplacian against T (on
    the largest connected component, whose size is on the right axis)."""
    sweep = record.result("graph_sweep")
    T = [s["T"] for s in sweep]
    fig, ax = plotting.subplots(figsize=(5.2, 3.8))
    ax.plot(T, [s["lambda2"] for s in sweep], "o-", label="lambda_2")
    ax.plot(T, [s["lambda3"] for s in sweep], "s-", label="lambda_3")
    ax.plot(T, [s["lambda3"] - s["lambda2"] for s in sweep], "^--", label="gap lambda_3 - lambda_2")
    ax.set_yscale("log")
    ax.set_xlabel("threshold T (l2)")
    ax.set_ylabel("eigenvalue of L = D - A")
    ax2 = ax.twinx()
    ax2.plot(T, [s["n"] for s in sweep], "k:", lw=1, label="component size")
    ax2.set_ylabel("points in the graph (largest component)")
    ax2.grid(False)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Spectrum of the threshold graph against T", fontsize=9)
    return plotting.save(fig, out / "eigenvalues_vs_T")


def bound_vs_measured(record, out):
    """Per T: the spectral lower bound sqrt(n lambda_2 / |E|) against the measured RMS
    (filled) and max (open) change over the graph's edges of each normalised feature;
    every measured point must lie on or above the bound."""
    sweep = record.result("graph_sweep")
    T = [s["T"] for s in sweep]
    fig, ax = plotting.subplots(figsize=(5.4, 3.9))
    ax.plot(T, [s["bound"] for s in sweep], "k-", lw=2, label="lower bound sqrt(n lambda_2/|E|)")
    colors = {"spectral": "#1b9e77", "pca": "#7570b3", "network": "#d95f02", "random0": "#999999"}
    for name, c in colors.items():
        ax.plot(T, [s["features"][name]["rms"] for s in sweep], "o-", color=c, label=f"{name}: RMS over edges")
        ax.plot(T, [s["features"][name]["max"] for s in sweep], "o", mfc="none", color=c)
    ax.set_yscale("log")
    ax.set_xlabel("threshold T (l2)")
    ax.set_ylabel("change of the normalised feature across an edge")
    ax.set_title("Spectral lower bound vs measured edge changes (open: max)", fontsize=9)
    ax.legend(fontsize=6.5)
    return plotting.save(fig, out / "bound_vs_measured")


def accuracy_vs_k(record, out):
    """Test accuracy of multinomial logistic regression on k spectral features (test
    images through the neighbour-average extension) and on k PCA components."""
    acc = record.result("accuracy")
    ks = sorted(int(k) for k in acc)
    fig, ax = plotting.subplots(figsize=(5.0, 3.6))
    ax.plot(ks, [acc[str(k)]["spectral"] for k in ks], "o-", label="spectral features (extension b)")
    ax.plot(ks, [acc[str(k)]["pca"] for k in ks], "s-", label="PCA components")
    ax.set_xscale("log")
    ax.set_xlabel("k (number of features)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Logistic regression on k features", fontsize=9)
    ax.legend(fontsize=7)
    return plotting.save(fig, out / "accuracy_vs_k")
