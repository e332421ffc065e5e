package org.tensorflow.lite;

import java.nio.ByteBuffer;
import java.util.Map;

/**
 * Compile-time stand-in for LiteRT's Java Interpreter (com.google.ai.edge.litert:litert): the
 * constructor, options and signature call of its public API that WordPieceBert.kt may use, with
 * the same signatures, so that a call the real class lacks fails to compile here too. Building
 * one is allowed (the tokenizer check constructs WordPieceBert); running one is not.
 */
public final class Interpreter implements AutoCloseable {
    public static class Options {
        public Options() {}

        public Options setNumThreads(int numThreads) {
            return this;
        }
    }

    public Interpreter(ByteBuffer byteBuffer, Options options) {}

    public String[] getSignatureKeys() {
        throw new UnsupportedOperationException("compile-time stand-in");
    }

    public Tensor getInputTensorFromSignature(String inputName, String signatureKey) {
        throw new UnsupportedOperationException("compile-time stand-in");
    }

    public void runSignature(Map<String, Object> inputs, Map<String, Object> outputs, String signatureKey) {
        throw new UnsupportedOperationException("compile-time stand-in");
    }

    @Override
    public void close() {}
}
