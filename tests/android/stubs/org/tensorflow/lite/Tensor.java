package org.tensorflow.lite;

/** Compile-time stand-in for LiteRT's Java Tensor: the getters the README's sample reads. */
public interface Tensor {
    int[] shape();

    int numBytes();
}
