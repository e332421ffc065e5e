package org.tensorflow.lite;

/** Compile-time stand-in for LiteRT's Java Tensor: the shape getter the README's sample reads. */
public interface Tensor {
    int[] shape();
}
